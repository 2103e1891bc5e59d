package importer

import (
	"context"
	"os"

	"blockfs/fs/chunker"
)

// QueueBlocksOf runs queueBlocks over f as if it held size bytes when
// opened, with the default chunking, and returns its error and the bytes
// it queued (the test reading a file that shrank under the importer).
func QueueBlocksOf(f *os.File, size int64) (queued int64, err error) {
	im := &Importer{opts: Options{Chunking: chunker.DefaultConfig()}}
	jobs := make(chan blockJob)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for j := range jobs {
			queued += int64(len(j.data))
		}
	}()
	err = im.queueBlocks(context.Background(), &sourceFile{im: im}, f, size, jobs, nil, nil)
	close(jobs)
	<-done
	return queued, err
}
