package gc

// NaiveOptions returns opts for the one-phase mark and sweep (no condemned
// set, no lease checks): the collector the protocol exists to replace, kept
// so that tests show the race it loses.
func NaiveOptions(opts Options) Options { opts.onePhase = true; return opts }
