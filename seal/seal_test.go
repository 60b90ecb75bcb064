package seal

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 11, 30, 7, 0, 0, 0, time.UTC)

func TestSealOpens(t *testing.T) {
	k := NewKey("dk", "", now)
	ring, err := NewKeyring(k)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ring.Seal(k.ID, "db.password", []byte(`"hunter2"`))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b.Data, []byte("hunter2")) || b.Key != k.ID || len(b.Nonce) != 12 {
		t.Fatalf("box %+v", b)
	}
	again, _ := ring.Seal(k.ID, "db.password", []byte(`"hunter2"`))
	if bytes.Equal(again.Nonce, b.Nonce) || bytes.Equal(again.Data, b.Data) {
		t.Fatal("two seals of one value share a nonce")
	}
	pt, err := ring.Open("db.password", b)
	if err != nil || string(pt) != `"hunter2"` {
		t.Fatalf("open: %q %v", pt, err)
	}
}

// Every way a box fails to open is a *Error naming the key name and key id,
// and none of them says what the value was.
func TestOpenRefuses(t *testing.T) {
	k := NewKey("dk", "", now)
	ring, _ := NewKeyring(k)
	b, _ := ring.Seal(k.ID, "db.password", []byte(`"hunter2"`))
	other := NewKey("dk", "", now)
	other.ID = k.ID // a different key under the same id
	wrongRing, _ := NewKeyring(other)
	tampered := *b
	tampered.Data = bytes.Clone(b.Data)
	tampered.Data[3] ^= 1
	short := *b
	short.Nonce = b.Nonce[:4]
	empty, _ := NewKeyring()
	for _, c := range []struct {
		name    string
		ring    *Keyring
		key     string
		box     *Box
		missing bool
		want    string
	}{
		{"tampered", ring, "db.password", &tampered, false, "tampered"},
		{"moved to another key", ring, "db.user", b, false, "moved from another key"},
		{"wrong key under the id", wrongRing, "db.password", b, false, "is not the key that sealed it"},
		{"missing key", empty, "db.password", b, true, "does not hold"},
		{"corrupt nonce", ring, "db.password", &short, false, "corrupt"},
	} {
		t.Run(c.name, func(t *testing.T) {
			pt, err := c.ring.Open(c.key, c.box)
			var se *Error
			if !errors.As(err, &se) || pt != nil {
				t.Fatalf("opened: %q %v", pt, err)
			}
			if se.Missing != c.missing || se.KeyID != k.ID || !strings.Contains(se.Error(), c.want) || !strings.Contains(se.Error(), k.ID) {
				t.Fatalf("error %+v: %v", se, err)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatal("the error holds the value")
			}
		})
	}
}

func TestLocalWrapsDataKeys(t *testing.T) {
	kek := NewKey("kek", "", now)
	ring, _ := NewKeyring(kek)
	p, err := NewLocal(ring)
	if err != nil {
		t.Fatal(err)
	}
	dk := NewKey("dk", "billing.", now)
	w, err := p.Wrap(context.Background(), dk.ID, dk.Secret)
	if err != nil || w.KEK != kek.ID || bytes.Contains(w.Data, dk.Secret) {
		t.Fatalf("wrap: %+v %v", w, err)
	}
	secret, err := p.Unwrap(context.Background(), dk.ID, w)
	if err != nil || !bytes.Equal(secret, dk.Secret) {
		t.Fatalf("unwrap: %v", err)
	}
	if _, err := p.Unwrap(context.Background(), "dk-other", w); err == nil {
		t.Fatal("a wrapped key unwrapped under another id")
	}
	stranger, _ := NewLocal(mustRing(t, NewKey("kek", "", now)))
	_, err = stranger.Unwrap(context.Background(), dk.ID, w)
	var se *Error
	if !errors.As(err, &se) || !se.Missing || !strings.Contains(err.Error(), kek.ID) {
		t.Fatalf("another node's keyring: %v", err)
	}
	if _, err := NewLocal(mustRing(t, NewKey("kek", "billing.", now))); err == nil {
		t.Fatal("a keyring with no key for every name made a provider")
	}
}

func mustRing(t *testing.T, keys ...Key) *Keyring {
	t.Helper()
	r, err := NewKeyring(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestKeyringNewest(t *testing.T) {
	a, b := NewKey("dk", "", now), NewKey("dk", "", now.Add(time.Hour))
	c := NewKey("dk", "billing.", now.Add(2*time.Hour))
	r := mustRing(t, b, a, c)
	if k, _ := r.Newest(""); k.ID != b.ID {
		t.Fatalf("newest for every name: %s, want %s", k.ID, b.ID)
	}
	if k, _ := r.Newest("billing."); k.ID != c.ID {
		t.Fatalf("newest for billing.: %s", k.ID)
	}
	if _, ok := r.Newest("web."); ok {
		t.Fatal("a key for web.")
	}
}

func TestKeyringFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ring")
	r := mustRing(t, NewKey("kek", "", now), NewKey("dk", "billing.", now))
	if err := WriteKeyring(path, r); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode().Perm())
	}
	if err := WriteKeyring(path, r); err == nil {
		t.Fatal("overwrote a keyring")
	}
	back, err := ReadKeyring(path)
	if err != nil || len(back.Keys) != 2 || !bytes.Equal(back.Keys[1].Secret, r.Keys[1].Secret) || back.Keys[1].Prefix != "billing." {
		t.Fatalf("read back: %+v %v", back, err)
	}
	os.Chmod(path, 0o644)
	if _, err := ReadKeyring(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a world-readable keyring: %v", err)
	}
}

func TestParseKeyringRefuses(t *testing.T) {
	good := NewKey("dk", "", now)
	doc := func(keys ...Key) string {
		return string((&Keyring{Keys: keys}).Encode())
	}
	short := good
	short.Secret = good.Secret[:16]
	noID := good
	noID.ID = ""
	for _, c := range []struct{ name, doc, want string }{
		{"not json", `{"format": "cfgcluster-keyring/v1", "keys": [` + `"AAAA`, "invalid JSON"},
		{"other format", strings.Replace(doc(good), Format, "x/v9", 1), "format"},
		{"unknown field", strings.Replace(doc(good), `"prefix"`, `"scope"`, 1), "unknown field"},
		{"short secret", doc(short), "16 bytes"},
		{"no id", doc(noID), "no id"},
		{"an id twice", doc(good, good), "twice"},
		{"wrong type", `{"format":"` + Format + `","keys":[{"id":"x","secret":5}]}`, "wrong type"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseKeyring([]byte(c.doc))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("%v, want %q", err, c.want)
			}
		})
	}
}

// FuzzParseKeyring: any input parses or is refused; no error quotes it (a
// keyring holds secrets).
func FuzzParseKeyring(f *testing.F) {
	f.Add(mustRingF(NewKey("kek", "", now)).Encode())
	f.Add([]byte(`{"format":"cfgcluster-keyring/v1","keys":[{"id":"a","secret":"c2VjcmV0c2VjcmV0"}]}`))
	f.Add([]byte(`{"format":"cfgcluster-keyring/v1","keys":[{"id":"a","secret":"zzzz-not-base64-QUJDREVGR0g"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseKeyring(b)
		if err != nil {
			for _, w := range strings.Fields(string(b)) {
				if len(w) >= 24 && strings.Contains(err.Error(), w) {
					t.Fatalf("the error %q quotes the input's %q", err, w)
				}
			}
			return
		}
		for _, k := range r.Keys {
			if len(k.Secret) != KeySize || k.ID == "" {
				t.Fatalf("accepted key %q of %d bytes", k.ID, len(k.Secret))
			}
		}
	})
}

func mustRingF(keys ...Key) *Keyring {
	r, err := NewKeyring(keys...)
	if err != nil {
		panic(err)
	}
	return r
}

// BenchmarkSeal seals and opens a 1 KiB value (issue 11's budget: sealing
// adds at most 20 µs to a write). go test ./seal -run '^$' -bench . -benchmem
func BenchmarkSeal(b *testing.B) {
	k := NewKey("dk", "", now)
	ring := mustRingF(k)
	v := bytes.Repeat([]byte("x"), 1024)
	b.Run("seal-1KiB", func(b *testing.B) {
		for b.Loop() {
			ring.Seal(k.ID, "db.password", v)
		}
	})
	box, _ := ring.Seal(k.ID, "db.password", v)
	b.Run("open-1KiB", func(b *testing.B) {
		for b.Loop() {
			ring.Open("db.password", box)
		}
	})
}
