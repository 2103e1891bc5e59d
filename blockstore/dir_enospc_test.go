package blockstore

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// smallFS mounts a 1 MiB tmpfs for the test.
func smallFS(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("mount tmpfs:", err)
		}
		t.Skip("mount tmpfs:", err)
	}
	// Lazily: the stores opened on it keep their session locks open.
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// A Put that runs out of space leaves no temp file: the disk is as full
// as before, and a block that fits still goes in.
func TestDirPutENOSPC(t *testing.T) {
	d, err := OpenDir(filepath.Join(smallFS(t), "store"), true)
	if err != nil {
		t.Fatal(err)
	}
	big := testBlocks(1, 2<<20)[0]
	if err := d.Put(context.Background(), Sum(big), big); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Put of 2 MiB into 1 MiB: %v, want ENOSPC", err)
	}
	if left := tempFiles(t, d.Root()); len(left) != 0 {
		t.Fatalf("temp files left by a failed Put: %v", left)
	}
	small := testBlocks(1, 512<<10)[0]
	if err := d.Put(context.Background(), Sum(small), small); err != nil {
		t.Fatal("Put after ENOSPC:", err)
	}
}

// TestDirDeadWriterTemps: a deferred import that dies after filling the
// disk with pending blocks leaves them behind; the next OpenDir removes
// them at once (their writer is dead), so the retry has room. A live
// writer's pending blocks are never touched.
func TestDirDeadWriterTemps(t *testing.T) {
	if root := os.Getenv("BLOCKFS_TEST_DEAD_WRITER"); root != "" {
		d, err := OpenDir(root, false)
		if err != nil {
			os.Exit(2)
		}
		d.DeferSync()
		for _, b := range testBlocks(8, 256<<10) {
			if err := d.Put(context.Background(), Sum(b), b); err != nil {
				os.Exit(0) // ENOSPC: the import gives up without Flush
			}
		}
		os.Exit(3)
	}
	root := filepath.Join(smallFS(t), "store")
	live, err := OpenDir(root, true)
	if err != nil {
		t.Fatal(err)
	}
	live.DeferSync()
	mine := testBlocks(1, 64<<10)[0]
	if err := live.Put(context.Background(), Sum(mine), mine); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestDirDeadWriterTemps$")
	cmd.Env = append(os.Environ(), "BLOCKFS_TEST_DEAD_WRITER="+root)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dead writer: %v\n%s", err, out)
	}
	if n := len(tempFiles(t, root)); n < 2 {
		t.Fatalf("%d temp files after the dead writer, want its own and ours", n)
	}
	retry, err := OpenDir(root, false)
	if err != nil {
		t.Fatal(err)
	}
	if left := tempFiles(t, root); len(left) != 1 {
		t.Fatalf("temp files after reopening: %v, want only the live writer's", left)
	}
	blk := testBlocks(1, 512<<10)[0]
	if err := retry.Put(context.Background(), Sum(blk), blk); err != nil {
		t.Fatal("retry after the dead writer:", err)
	}
	if err := live.Flush(context.Background()); err != nil {
		t.Fatal("live writer's flush:", err)
	}
	if ok, _ := retry.Has(context.Background(), Sum(mine)); !ok {
		t.Fatal("live writer's block lost")
	}
}
