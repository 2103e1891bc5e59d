package main

import (
	"strconv"
	"strings"

	"blockfs/fs/mount"

	"github.com/spf13/pflag"
)

// ownerFlags are the owner and permission overrides of mount, named as in
// rclone and gcsfuse so that their users find them.
type ownerFlags struct {
	uid, gid, umask, fileMode, dirMode *string
	opts                               *[]string // -o uid=N,gid=N,umask=OCT,file_mode=OCT,dir_mode=OCT
}

func addOwnerFlags(fl *pflag.FlagSet) *ownerFlags {
	return &ownerFlags{
		uid:      fl.String("uid", "", "serve every file as owned by this user id (default: as imported)"),
		gid:      fl.String("gid", "", "serve every file as owned by this group id (default: as imported)"),
		umask:    fl.String("umask", "", "octal permission bits to clear on every file and directory, e.g. 022 or 077"),
		fileMode: fl.String("file-mode", "", "octal permissions for every file, e.g. 0444 (default: as imported)"),
		dirMode:  fl.String("dir-mode", "", "octal permissions for every directory, e.g. 0555 (default: as imported)"),
		opts:     fl.StringSliceP("options", "o", nil, "the same as mount(8) options: uid=N,gid=N,umask=OCT,file_mode=OCT,dir_mode=OCT (for fstab and autofs)"),
	}
}

// fromOptions fills the overrides not given as flags from -o key=value
// options, as an fstab line or autofs map would give them.
func (f *ownerFlags) fromOptions() error {
	keys := map[string]*string{"uid": f.uid, "gid": f.gid, "umask": f.umask, "file_mode": f.fileMode, "dir_mode": f.dirMode}
	for _, o := range *f.opts {
		k, v, ok := strings.Cut(o, "=")
		dst := keys[k]
		if !ok || dst == nil {
			return usagef("-o %q: want uid=, gid=, umask=, file_mode= or dir_mode=", o)
		}
		if *dst == "" {
			*dst = v
		}
	}
	return nil
}

// apply puts the overrides given into opts; a bad value is a usage error.
func (f *ownerFlags) apply(opts *mount.Options) error {
	if err := f.fromOptions(); err != nil {
		return err
	}
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
