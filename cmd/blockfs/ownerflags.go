package main

import (
	"strconv"

	"blockfs/fs/mount"

	"github.com/spf13/pflag"
)

// ownerFlags are the owner and permission overrides of mount, named as in
// rclone and gcsfuse so that their users find them.
type ownerFlags struct {
	uid, gid, umask, fileMode, dirMode *string
}

func addOwnerFlags(fl *pflag.FlagSet) *ownerFlags {
	return &ownerFlags{
		uid:      fl.String("uid", "", "serve every file as owned by this user id (default: as imported)"),
		gid:      fl.String("gid", "", "serve every file as owned by this group id (default: as imported)"),
		umask:    fl.String("umask", "", "octal permission bits to clear on every file and directory, e.g. 022 or 077"),
		fileMode: fl.String("file-mode", "", "octal permissions for every file, e.g. 0444 (default: as imported)"),
		dirMode:  fl.String("dir-mode", "", "octal permissions for every directory, e.g. 0555 (default: as imported)"),
	}
}

// apply puts the overrides given into opts; a bad value is a usage error.
func (f *ownerFlags) apply(opts *mount.Options) error {
	id := func(name, s string) (*uint32, error) {
		if s == "" {
			return nil, nil
		}
		v, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return nil, usagef("--%s %q: want a numeric id", name, s)
		}
		u := uint32(v)
		return &u, nil
	}
	mode := func(name, s string) (uint32, error) {
		if s == "" {
			return 0, nil
		}
		v, err := strconv.ParseUint(s, 8, 32)
		if err != nil || v > 0o7777 {
			return 0, usagef("--%s %q: want octal permission bits (at most 7777)", name, s)
		}
		return uint32(v), nil
	}
	var err error
	if opts.UID, err = id("uid", *f.uid); err != nil {
		return err
	}
	if opts.GID, err = id("gid", *f.gid); err != nil {
		return err
	}
	for _, m := range []struct {
		name, s string
		dst     *uint32
	}{{"umask", *f.umask, &opts.Umask}, {"file-mode", *f.fileMode, &opts.FileMode}, {"dir-mode", *f.dirMode, &opts.DirMode}} {
		if *m.dst, err = mode(m.name, m.s); err != nil {
			return err
		}
	}
	if (*f.fileMode != "" && opts.FileMode == 0) || (*f.dirMode != "" && opts.DirMode == 0) {
		// 0 means "as imported" in mount.Options: refuse rather than surprise.
		return usagef("--file-mode or --dir-mode 0 is not a mode; use --umask 7777 to serve no permissions")
	}
	return nil
}
