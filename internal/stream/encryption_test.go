package stream

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// storeContains reports whether any file under dir holds needle.
func storeContains(t *testing.T, dir string, needle []byte) bool {
	t.Helper()
	found := false
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, needle) {
			found = true
		}
		return nil
	})
	return found
}

func TestEncryptionAtRest(t *testing.T) {
	payload := []byte(`[{"n":"spo2","v":97,"marker":"tend-plaintext-marker-7f3a"}]`)
	for _, tt := range []struct {
		name      string
		key       string
		plaintext bool
	}{
		{"without a key the payload is on disk as is", "", true},
		{"with a key it is not", "a long development key, never use in production", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := New(Config{Durables: testDurables, Dir: dir, EncryptionKey: tt.key})
			if err := s.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := s.Publish(context.Background(), "tend.readings.x", payload, "m1"); err != nil {
				t.Fatal(err)
			}
			s.Close()
			if got := storeContains(t, dir, []byte("tend-plaintext-marker-7f3a")); got != tt.plaintext {
				t.Fatalf("plaintext on disk: %v, want %v", got, tt.plaintext)
			}
			// A restart with the same key reads the message back.
			s2 := New(Config{Durables: testDurables, Dir: dir, EncryptionKey: tt.key})
			if err := s2.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer s2.Close()
			msgs := collect(t, s2, "writer", 1, 20*time.Second)
			if len(msgs) != 1 || msgs[0] != string(payload) {
				t.Fatalf("after restart got %q", msgs)
			}
		})
	}
}

func TestEncryptedStoreNeedsItsKey(t *testing.T) {
	dir := t.TempDir()
	s := New(Config{Durables: testDurables, Dir: dir, EncryptionKey: "the right key"})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Publish(context.Background(), "tend.readings.x", []byte("secret reading"), "m1"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2 := New(Config{Durables: testDurables, Dir: dir, EncryptionKey: "the wrong key"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s2.Start(ctx); err == nil {
		s2.Close()
		t.Fatal("started with the wrong key")
	}
}
