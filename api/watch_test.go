package api

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

func TestReadEvents(t *testing.T) {
	stream := ": keepalive\n\nid: 7\nevent: change\ndata: {\"revision\":7}\n\ndata: a\ndata: b\n\nevent: resync\ndata: {}\n\n"
	var got []string
	if err := ReadEvents(strings.NewReader(stream), func(ev string, data []byte) error {
		got = append(got, ev+"="+string(data))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := []string{`change={"revision":7}`, "message=a\nb", "resync={}"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// FuzzReadEvents: any byte stream parses without panicking, and every event
// written in SSE form comes back with its data.
func FuzzReadEvents(f *testing.F) {
	f.Add([]byte("id: 1\nevent: change\ndata: {}\n\n"), "payload")
	f.Add([]byte(": c\n\ndata:\n\n"), "x\ny")
	f.Fuzz(func(t *testing.T, noise []byte, payload string) {
		_ = ReadEvents(bytes.NewReader(noise), func(string, []byte) error { return nil })
		if strings.ContainsAny(payload, "\r") {
			return
		}
		var b strings.Builder
		b.WriteString("event: change\n")
		for _, l := range strings.Split(payload, "\n") {
			b.WriteString("data: " + l + "\n")
		}
		b.WriteString("\n")
		var got []byte
		if err := ReadEvents(strings.NewReader(b.String()), func(ev string, data []byte) error {
			if ev != "change" {
				t.Fatalf("event %q", ev)
			}
			got = data
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if string(got) != payload {
			t.Fatalf("data %q, want %q", got, payload)
		}
	})
}
