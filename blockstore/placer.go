package blockstore

// Placer is an optional capability (found with As) of a store over several
// servers that each serve part of the blocks: told the blocks one reader is
// about to read together (a file's, when a mount opens it), it may spread
// which server sends each, so that no server's link carries more than its
// share. It changes where blocks are asked for, never what is read: a
// store that has it answers every Get as before, and a block not placed
// goes where it always went.
type Placer interface {
	Place(locs []Locator)
}
