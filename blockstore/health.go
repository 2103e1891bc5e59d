package blockstore

// HealthReporter is an optional capability (found with As, like the
// others) of a store that learns of trouble its calls do not return: a
// read tier (`blockfs serve`) answers refs from its last value while the
// store behind it is down, so every call succeeds and only the answer's
// flag says the data may be stale. A mount's stats ask it, so that a
// mount fed such answers does not call itself healthy.
type HealthReporter interface {
	// Health reports whether the store's answers are current and, when
	// they are not, why, as a short phrase for an operator.
	Health() (ok bool, reason string)
}

// Health asks the first HealthReporter in s's Unwrap chain; a store with
// none has nothing to report beyond its calls' errors and counts as
// healthy here.
func Health(s Store) (ok bool, reason string) {
	if h, found := As[HealthReporter](s); found {
		return h.Health()
	}
	return true, ""
}

// ReasonStoreDown is the Health reason of a read tier whose store does not
// answer it.
const ReasonStoreDown = "store behind the read tier is down"
