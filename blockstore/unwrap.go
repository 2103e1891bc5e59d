package blockstore

// Optional capabilities. Beside the five methods of Store, a store may offer
// more through optional interfaces: Mapper, Keeper, HashedPutter, Flusher,
// RefStore. Callers find them with As, never with a type assertion on the
// Store they were handed, because that Store is often a wrapper (the disk
// cache, metrics, counting in tests) and a type assertion on a wrapper
// silently loses whatever the wrapper did not think to forward: a mount
// with --metrics once stopped mapping blocks that way.
//
// The rule for a wrapper, for each capability:
//
//   - it implements the capability itself, faithfully, when it has to see
//     the calls: a wrapper that counts or times reads implements Map (and
//     forwards to As[Mapper] of what it wraps, or says ErrUnsupported), a
//     wrapper that times writes implements PutHashed; a cache that serves
//     mapped hits is a Mapper in its own right;
//   - otherwise it exposes what it wraps with Unwrap, and As finds the
//     capability below it (refs and Flush pass through every wrapper we
//     have untouched).
//
// A wrapper with Unwrap that intercepts Get (to fail or delay it) but not
// Map lets a Mapper below it bypass the interception: such a wrapper
// implements Map too, or has no Unwrap.

// Unwrapper is implemented by stores that wrap another Store, so that As
// can find the capabilities of the store underneath.
type Unwrapper interface {
	// Unwrap returns the wrapped store.
	Unwrap() Store
}

// As returns the first store in s's Unwrap chain, s itself first, that
// implements T, and whether there is one. T is one of the optional
// capability interfaces (or any type a caller needs, such as *DirStore).
func As[T any](s Store) (T, bool) {
	for s != nil {
		if t, ok := s.(T); ok {
			return t, true
		}
		u, ok := s.(Unwrapper)
		if !ok {
			break
		}
		s = u.Unwrap()
	}
	var zero T
	return zero, false
}
