package s3

// SetListPageSize sets the keys asked for per listing request, so that a
// test reaches the fan-out listing with a few hundred blocks; it returns a
// function restoring the default.
func SetListPageSize(n int) func() {
	old := listPageSize
	listPageSize = n
	return func() { listPageSize = old }
}
