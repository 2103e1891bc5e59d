package tier

import (
	"context"
	"fmt"

	"blockfs/blockstore"
)

// Get implements blockstore.Store: from the block's owner among the
// healthy members, else the next-ranked.
func (s *Store) Get(ctx context.Context, loc blockstore.Locator, dst []byte) (int, error) {
	var n int
	err := s.callFirst(ctx, blockKey(loc.Hash), s.hints.get(loc.Hash), "get "+loc.String(), func(m *member) error {
		var err error
		n, err = m.c.Get(ctx, loc, dst)
		return err
	})
	return n, err
}

// Put implements blockstore.Store: it checks the block here, then writes
// through the block's owner (every member writes to the same store).
func (s *Store) Put(ctx context.Context, h blockstore.Hash, data []byte) error {
	if err := blockstore.CheckPut(h, data); err != nil {
		return fmt.Errorf("tier: %w", err)
	}
	return s.PutHashed(ctx, h, data)
}

// PutHashed implements blockstore.HashedPutter. A block PUT is idempotent
// (same name, same bytes), so it may go to another member after any
// failure.
func (s *Store) PutHashed(ctx context.Context, h blockstore.Hash, data []byte) error {
	return s.call(ctx, blockKey(h), "put "+h.String(), func(m *member) error {
		return m.c.PutHashed(ctx, h, data)
	})
}

// Has implements blockstore.Store.
func (s *Store) Has(ctx context.Context, h blockstore.Hash) (bool, error) {
	var ok bool
	err := s.call(ctx, blockKey(h), "has "+h.String(), func(m *member) error {
		var err error
		ok, err = m.c.Has(ctx, h)
		return err
	})
	return ok, err
}

// List implements blockstore.Store: the listing of one member (they all
// list the same store). It moves to another member only while nothing has
// been passed to fn, so fn never sees a block twice.
func (s *Store) List(ctx context.Context, fn func(blockstore.Locator) error) error {
	delivered := false
	var fnErr error
	err := s.call(ctx, 0, "list", func(m *member) error {
		err := m.c.List(ctx, func(loc blockstore.Locator) error {
			delivered = true
			if err := fn(loc); err != nil {
				fnErr = err
				return err
			}
			return nil
		})
		if fnErr != nil {
			return permanentErr{fnErr} // the caller's own: no other member asked
		}
		if err != nil && delivered && memberFailure(ctx, err) {
			m.failed(err)
			return permanentErr{err}
		}
		return err
	})
	if fnErr != nil {
		return fnErr
	}
	return err
}

// permanentErr ends a call with no other member tried.
type permanentErr struct{ err error }

func (e permanentErr) Error() string { return e.err.Error() }
func (e permanentErr) Unwrap() error { return e.err }

// Delete implements blockstore.Store, through the block's owner (whose
// pool is the one that may hold it).
func (s *Store) Delete(ctx context.Context, h blockstore.Hash) error {
	return s.call(ctx, blockKey(h), "delete "+h.String(), func(m *member) error {
		return m.c.Delete(ctx, h)
	})
}

// GetRef implements blockstore.RefStore: from any healthy member (the
// ref's rendezvous owner first, so reads spread over the tier). Every
// member reads the one store's ref, so any answer is the store's.
func (s *Store) GetRef(ctx context.Context, name string) ([]byte, string, error) {
	if err := blockstore.CheckRefName(name); err != nil {
		return nil, "", err
	}
	var data []byte
	var version string
	err := s.call(ctx, nameKey(name), "get ref "+name, func(m *member) error {
		var err error
		data, version, err = m.c.GetRef(ctx, name)
		if err == nil {
			_, down := m.c.Upstream()
			s.refStale.Store(down)
		}
		return err
	})
	return data, version, err
}

// PutRef implements blockstore.RefStore through one member: every member
// writes the same store, whose compare-and-swap is the one that decides,
// so any member's CAS is the store's. A write goes to another member only
// when the first provably never received it (the connection was refused):
// after a timeout or a reset the first may have applied it, and the same
// write sent again would conflict with itself, so that error is returned
// for the caller to read the ref and decide.
func (s *Store) PutRef(ctx context.Context, name string, data []byte, ifVersion string) (string, error) {
	if err := blockstore.CheckRefName(name); err != nil {
		return "", err
	}
	var version string
	err := s.call(ctx, nameKey(name), "put ref "+name, func(m *member) error {
		var err error
		version, err = m.c.PutRef(ctx, name, data, ifVersion)
		if err != nil && memberFailure(ctx, err) && !notDelivered(err) {
			m.failed(err)
			return permanentErr{fmt.Errorf("%w (it may have been applied: read the ref before writing again)", err)}
		}
		return err
	})
	return version, err
}
