package main

import (
	"fmt"
	"os"

	"github.com/dustin/go-humanize"
	"github.com/spf13/pflag"
)

// sizeValue is a byte count flag that takes humanized sizes: 512MiB, 1G, 4096.
type sizeValue int64

func (s *sizeValue) String() string { return humanize.IBytes(uint64(*s)) }
func (s *sizeValue) Type() string   { return "size" }
func (s *sizeValue) Set(v string) error {
	n, err := humanize.ParseBytes(v)
	if err != nil {
		return fmt.Errorf("not a size: %q (want e.g. 256MiB)", v)
	}
	if n > 1<<62 {
		return fmt.Errorf("size %q too large", v)
	}
	*s = sizeValue(n)
	return nil
}

func sizeFlag(fl *pflag.FlagSet, name string, def int64, usage string) *int64 {
	v := sizeValue(def)
	fl.Var(&v, name, usage)
	return (*int64)(&v)
}

// storeFlag is --store, defaulting to $BLOCKFS_STORE.
func storeFlag(fl *pflag.FlagSet) *string {
	return fl.String("store", os.Getenv("BLOCKFS_STORE"), "the store: a directory (default $BLOCKFS_STORE)")
}

func requireStore(store string) error {
	if store == "" {
		return usagef("no store given: use --store STORE or set BLOCKFS_STORE")
	}
	return nil
}
