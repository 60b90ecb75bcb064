package seal

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// fieldName is what an error may quote of a field name it does not know.
var fieldName = regexp.MustCompile(`^[a-z_]{1,20}$`)

// Format names the keyring file format; a file of another is refused.
const Format = "cfgcluster-keyring/v1"

type keyringFile struct {
	Format string `json:"format"`
	Keys   []Key  `json:"keys"`
}

// ParseKeyring decodes a keyring file's contents, refusing unknown fields,
// another format, a key without id or of the wrong size, and an id twice.
// Its errors never quote the file, which holds secrets.
func ParseKeyring(b []byte) (*Keyring, error) {
	var f keyringFile
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&f); err != nil {
		return nil, fmt.Errorf("not a keyring: %s", jsonReason(err))
	}
	if f.Format != Format {
		return nil, fmt.Errorf("not a keyring of format %s", Format)
	}
	return NewKeyring(f.Keys...)
}

// jsonReason says what is wrong with a document without quoting it: a
// syntax error's offset, a type error's field.
func jsonReason(err error) string {
	switch e := err.(type) {
	case *json.SyntaxError:
		return fmt.Sprintf("invalid JSON at byte %d", e.Offset)
	case *json.UnmarshalTypeError:
		return fmt.Sprintf("field %s has the wrong type", e.Field)
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if name = strings.Trim(name, `"`); fieldName.MatchString(name) {
			return "unknown field " + name
		}
		return "an unknown field"
	}
	return "invalid JSON"
}

// Encode returns the keyring file's contents.
func (r *Keyring) Encode() []byte {
	b, _ := json.MarshalIndent(keyringFile{Format: Format, Keys: r.Keys}, "", "  ")
	return append(b, '\n')
}

// ReadKeyring reads a keyring file. It refuses one that others may read.
func ReadKeyring(path string) (*Keyring, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("keyring %s is readable by others (mode %v): chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r, err := ParseKeyring(b)
	if err != nil {
		return nil, fmt.Errorf("keyring %s: %w", path, err)
	}
	return r, nil
}

// WriteKeyring writes a new keyring file, mode 0600; it never overwrites one.
func WriteKeyring(path string, r *Keyring) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(r.Encode()); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}

// ReplaceKeyring writes a keyring file over an existing one, atomically
// (a new file renamed over it), mode 0600.
func ReplaceKeyring(path string, r *Keyring) error {
	tmp := path + ".new"
	if err := WriteKeyring(tmp, r); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
