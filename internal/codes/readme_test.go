package codes

import (
	"os"
	"strings"
	"testing"
)

// TestREADMEListsCodes keeps the README's code table in step with the code.
func TestREADMEListsCodes(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Skip("README.md not found beside the module")
	}
	if !strings.Contains(string(b), MarkdownTable()) {
		t.Fatal("README.md does not contain codes.MarkdownTable(); paste the current table into its Devices section")
	}
}
