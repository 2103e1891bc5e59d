package blockstore_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"blockfs/blockstore"
)

func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "blockstore-example")
	defer os.RemoveAll(dir)

	store, err := blockstore.OpenDir(dir, true)
	if err != nil {
		log.Fatal(err)
	}
	data := []byte("hello")
	loc := blockstore.LocatorOf(data)
	if err := store.Put(ctx, loc.Hash, data); err != nil {
		log.Fatal(err)
	}

	pool := blockstore.NewPool(store, blockstore.PoolConfig{MaxBytes: 64 << 20})
	defer pool.Close()
	for range 3 {
		buf, err := pool.Get(ctx, loc)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s %s\n", buf.Locator(), buf.Bytes())
		buf.Release()
	}
	s := pool.Stats()
	fmt.Println("store reads:", s.Fetches, "hits:", s.Hits)
	// Output:
	// 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824+5 hello
	// 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824+5 hello
	// 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824+5 hello
	// store reads: 1 hits: 2
}
