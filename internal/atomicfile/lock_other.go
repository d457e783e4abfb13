//go:build !unix

package atomicfile

import "os"

// Without flock, writers are serialised only by the atomic rename.
func lockFile(*os.File) error   { return nil }
func unlockFile(*os.File) error { return nil }
