package s3

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/minio/minio-go/v7"

	"blockfs/blockstore"
)

// listPageSize is the number of keys List asks for per request (S3's
// maximum); a variable so that tests reach the fan-out with few blocks.
var listPageSize = 1000

// listWorkers bounds the fan-out folders listed at once.
const listWorkers = 8

// List implements blockstore.Store with ListObjectsV2, each page retried
// on its own. A store that fits in one page costs one request; a larger
// one is listed by its 256 fan-out folders (blocks/<2 hex>/), listWorkers
// at a time, because one sequential listing of a million keys is a
// thousand round trips in a row. fn is called from one goroutine at a
// time; after it returns an error it is not called again. Keys that are
// not exactly a block's name in the right fan-out folder are skipped.
func (s *Store) List(ctx context.Context, fn func(blockstore.Locator) error) error {
	base := s.prefix + "blocks/"
	page, err := s.listPage(ctx, base, "", listPageSize)
	if err != nil {
		return s.fail("list", err)
	}
	if err := s.emit(base, page, fn); err != nil {
		return err
	}
	if len(page) < listPageSize {
		return nil
	}
	return s.fanOut(ctx, base, page[len(page)-1].Key, fn)
}

// fanOut lists every fan-out folder past key last (the end of the first
// page), in parallel; emits are serialised.
func (s *Store) fanOut(ctx context.Context, base, last string, fn func(blockstore.Locator) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var mu sync.Mutex // serialises fn and guards failed
	var failed error
	emit := func(page []blockstore.Locator) error {
		mu.Lock()
		defer mu.Unlock()
		if failed != nil {
			return failed
		}
		if err := s.emitParsed(page, fn); err != nil {
			failed = err
			cancel(err)
			return err
		}
		return nil
	}
	jobs := make(chan [2]string) // folder prefix, start after
	var wg sync.WaitGroup
	for range listWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if err := s.listFolder(ctx, base, j[0], j[1], emit); err != nil {
					mu.Lock()
					if failed == nil {
						failed = err
					}
					mu.Unlock()
					cancel(err)
				}
			}
		}()
	}
	for i := range 256 {
		folder := fmt.Sprintf("%s%02x/", base, i)
		after := ""
		switch {
		case strings.HasPrefix(last, folder):
			after = last
		case folder < last:
			continue // wholly in the first page
		}
		select {
		case jobs <- [2]string{folder, after}:
		case <-ctx.Done():
		}
	}
	close(jobs)
	wg.Wait()
	if failed != nil {
		return failed
	}
	return ctx.Err()
}

// listFolder lists one fan-out folder page by page.
func (s *Store) listFolder(ctx context.Context, base, folder, after string, emit func([]blockstore.Locator) error) error {
	for {
		page, err := s.listPage(ctx, folder, after, listPageSize)
		if err != nil {
			if cause := context.Cause(ctx); ctx.Err() != nil && cause != nil {
				return cause
			}
			return s.fail("list", err)
		}
		if err := emit(parsePage(base, page)); err != nil {
			return err
		}
		if len(page) < listPageSize {
			return nil
		}
		after = page[len(page)-1].Key
	}
}

func (s *Store) emit(base string, page []minio.ObjectInfo, fn func(blockstore.Locator) error) error {
	return s.emitParsed(parsePage(base, page), fn)
}

func (s *Store) emitParsed(page []blockstore.Locator, fn func(blockstore.Locator) error) error {
	for _, l := range page {
		if err := fn(l); err != nil {
			return err
		}
	}
	return nil
}

// parsePage keeps the keys of page that name a block in its fan-out folder.
func parsePage(base string, page []minio.ObjectInfo) []blockstore.Locator {
	out := make([]blockstore.Locator, 0, len(page))
	for _, o := range page {
		fan, name, ok := strings.Cut(strings.TrimPrefix(o.Key, base), "/")
		if !ok || len(fan) != 2 || !strings.HasPrefix(name, fan) {
			continue
		}
		h, err := blockstore.ParseHash(name)
		if err != nil {
			continue
		}
		out = append(out, blockstore.Locator{Hash: h, Size: o.Size})
	}
	return out
}
