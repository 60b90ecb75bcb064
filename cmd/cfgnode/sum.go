package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
)

// checkSum fails unless the file's SHA-256 is want (hex, or a sha256sum line).
func checkSum(path, want string) error {
	if b, err := os.ReadFile(want); err == nil {
		want = string(b) // a FILE.sha256 was given
	}
	want = strings.Fields(want + " ")[0]
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("%s: checksum %s, want %s: the file is damaged", path, got, want)
	}
	return nil
}
