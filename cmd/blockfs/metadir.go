package main

import "github.com/spf13/pflag"

// addMetaDirFlag is --meta-dir, for the commands that open a volume: where
// its private metadata log (a copy of every ingested segment, removed at
// exit; a killed process's is removed by the next one) is made.
func addMetaDirFlag(fl *pflag.FlagSet) *string {
	return fl.String("meta-dir", "", "make the private metadata log (a copy of the store's metadata) under this directory (default $TMPDIR)")
}

// addAtFlag is mount's --at: a pinned version for a job validated on it.
func addAtFlag(fl *pflag.FlagSet) *string {
	return fl.String("at", "", "serve exactly this snapshot (a number or a tag, see blockfs log), never refreshing")
}
