package cli

import (
	"fmt"
	"os"
	"strings"
)

// lookupEnv reads the environment variable name, or, when name_FILE is set
// instead, the contents of that file (trailing line breaks trimmed), so
// that secrets can come from mounted files (Docker and Kubernetes secrets)
// rather than the environment. Setting both is a mistake worth stopping
// for: which one was meant is unknowable.
func lookupEnv(name string) (string, bool, error) {
	v, ok := os.LookupEnv(name)
	file, fileOK := os.LookupEnv(name + "_FILE")
	switch {
	case ok && fileOK:
		return "", false, fmt.Errorf("both %s and %s_FILE are set; use one", name, name)
	case !fileOK:
		return v, ok, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		// The path is not secret; the contents would be.
		return "", false, fmt.Errorf("%s_FILE: %w", name, err)
	}
	return strings.TrimRight(string(b), "\r\n"), true, nil
}

// secretEnv is lookupEnv for secrets that are never flags (flags show in
// process lists); unset is "".
func secretEnv(name string) (string, error) {
	v, _, err := lookupEnv(name)
	return v, err
}

// servedSecrets are the secrets of tend serve that never come from flags.
type servedSecrets struct {
	bootstrapToken, smtpPassword, natsKey string
}

// minNATSKey is the shortest JetStream encryption key accepted: NATS
// derives the cipher keys from it, so it must be hard to guess.
const minNATSKey = 16

func serveSecrets(natsKeyFile string) (servedSecrets, error) {
	var s servedSecrets
	var err error
	if s.bootstrapToken, err = secretEnv("TEND_BOOTSTRAP_TOKEN"); err != nil {
		return s, err
	}
	if s.smtpPassword, err = secretEnv("TEND_SMTP_PASSWORD"); err != nil {
		return s, err
	}
	if s.natsKey, err = secretEnv("TEND_NATS_ENCRYPTION_KEY"); err != nil {
		return s, err
	}
	if natsKeyFile != "" {
		if s.natsKey != "" {
			return s, fmt.Errorf("both --nats-encryption-key-file and TEND_NATS_ENCRYPTION_KEY are set; use one")
		}
		b, err := os.ReadFile(natsKeyFile)
		if err != nil {
			return s, fmt.Errorf("--nats-encryption-key-file: %w", err)
		}
		s.natsKey = strings.TrimRight(string(b), "\r\n")
	}
	if s.natsKey != "" && len(s.natsKey) < minNATSKey {
		return s, fmt.Errorf("the NATS encryption key is shorter than %d characters; make one with: head -c 32 /dev/urandom | base64", minNATSKey)
	}
	return s, nil
}
