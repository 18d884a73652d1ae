package cli

import (
	"context"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/tendhealth/tend/internal/deviceca"
	"github.com/tendhealth/tend/internal/node"
	"github.com/tendhealth/tend/internal/store"
)

const caUsage = `Usage: tend ca <init|issue|revoke|list> [flags]

Device certificates for mutual TLS, one CA per organisation:

  tend ca init   --org ORG --ca-key-file FILE [--out DIR]
      create the organisation's device CA; FILE holds the key that seals the
      CA's private key in the store (created with a new key if missing);
      writes DIR/device-ca-ORG.pem and prints its fingerprint
  tend ca issue  --device ID --ca-key-file FILE [--out DIR] [--days N] [--force]
      issue a certificate for a registered device: DIR/device.pem and
      DIR/device-key.pem (0600)
  tend ca revoke --device ID | --serial HEX
      revoke a device's certificates, or one; running nodes refuse it at the
      next handshake and close its open connections within seconds
  tend ca list   --device ID
      list a device's certificates

Each works on --data DIR (SQLite) or --store URL, like tend serve.`

// runCA: `tend ca init|issue|revoke|list`.
func runCA(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			fmt.Fprintln(stdout, caUsage)
			return 0
		}
		fmt.Fprintln(stderr, caUsage)
		return 2
	}
	sub := args[0]
	fs := flag.NewFlagSet("ca "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "./tend-data", "data directory (SQLite database when --store is empty)")
	storeURL := fs.String("store", "", "store URL: empty for SQLite in the data directory, sqlite:PATH, or postgres://...")
	var org, keyFile, out, device, serial *string
	var days *int
	var force *bool
	switch sub {
	case "init":
		org = fs.String("org", store.DefaultOrg, "organisation whose device CA to create")
		keyFile = fs.String("ca-key-file", "", "file with the 32-byte key (base64 or hex) that seals CA private keys; created if missing")
		out = fs.String("out", ".", "directory for device-ca-ORG.pem")
	case "issue":
		device = fs.String("device", "", "device id (registered with POST /fhir/Device)")
		keyFile = fs.String("ca-key-file", "", "file with the key given to tend ca init")
		out = fs.String("out", ".", "directory for device.pem and device-key.pem")
		days = fs.Int("days", 365, "validity in days (at most the CA's)")
		force = fs.Bool("force", false, "replace device.pem and device-key.pem if they exist")
	case "revoke":
		device = fs.String("device", "", "revoke every valid certificate of this device")
		serial = fs.String("serial", "", "revoke the certificate with this serial number (hex)")
	case "list":
		device = fs.String("device", "", "device id")
	default:
		fmt.Fprintf(stderr, "tend ca: unknown subcommand %q\n\n%s\n", sub, caUsage)
		return 2
	}
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), caUsage+"\n\nFlags of tend ca "+sub+" (each also TEND_<FLAG>):")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args[1:], stdout); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		fmt.Fprintf(stderr, "tend ca %s: %v\n", sub, err)
		return 2
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "tend ca %s: %s\n", sub, fmt.Sprintf(format, a...))
		return code
	}
	if fs.NArg() > 0 {
		return fail(2, "unexpected argument %q", fs.Arg(0))
	}
	var key *deviceca.Key
	if keyFile != nil {
		if *keyFile == "" {
			return fail(2, "--ca-key-file is required (or TEND_CA_KEY_FILE)")
		}
		k, created, err := loadCAKey(*keyFile, sub == "init")
		if err != nil {
			return fail(2, "%v", err)
		}
		if created {
			fmt.Fprintf(stdout, "Wrote a new CA key to %s (0600). Keep it safe and give it to the nodes that may issue (--ca-key-file).\n", *keyFile)
		}
		key = &k
	}
	switch {
	case sub == "issue" && *device == "", sub == "list" && *device == "":
		return fail(2, "--device is required")
	case sub == "revoke" && (*device == "") == (*serial == ""):
		return fail(2, "give exactly one of --device and --serial")
	case sub == "issue" && (*days < 1 || *days > 3650):
		return fail(2, "--days must be between 1 and 3650")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	st, err := node.OpenStore(ctx, node.Config{DataDir: *data, StoreURL: *storeURL, Console: io.Discard})
	if err != nil {
		return fail(1, "%v", err)
	}
	defer st.Close()
	a := &deviceca.Authority{Store: st, Key: key}

	switch sub {
	case "init":
		ca, err := a.Init(ctx, *org)
		if errors.Is(err, store.ErrConflict) {
			return fail(1, "organisation %q already has a device CA (one per organisation: a new one would orphan its certificates)", *org)
		}
		if err != nil {
			return fail(1, "%v", err)
		}
		p := filepath.Join(*out, "device-ca-"+store.OrgOrDefault(*org)+".pem")
		if err := writeNew(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}), 0o644, true); err != nil {
			return fail(1, "the CA was created, but its certificate could not be written: %v", err)
		}
		fmt.Fprintf(stdout, "Device CA of %s created: %s\nSHA-256 fingerprint %s, valid until %s\n", store.OrgOrDefault(*org), p,
			deviceca.Fingerprint(ca), ca.NotAfter.Format(time.DateOnly))
		fmt.Fprintf(stdout, "Issue a device certificate: tend ca issue --device ID --ca-key-file %s\n", *keyFile)
	case "issue":
		certPath, keyPath := filepath.Join(*out, "device.pem"), filepath.Join(*out, "device-key.pem")
		if !*force {
			for _, p := range []string{certPath, keyPath} {
				if _, err := os.Lstat(p); err == nil {
					return fail(2, "%s exists (use --force to replace it)", p)
				}
			}
		}
		is, err := a.Issue(ctx, *device, time.Duration(*days)*24*time.Hour)
		if err != nil {
			return fail(1, "%v", err)
		}
		if err := os.MkdirAll(*out, 0o700); err != nil {
			return fail(1, "%v", err)
		}
		if err := writeNew(keyPath, is.Key, 0o600, *force); err != nil {
			return fail(1, "%v", err)
		}
		if err := writeNew(certPath, is.Cert, 0o644, *force); err != nil {
			return fail(1, "%v", err)
		}
		fmt.Fprintf(stdout, "Issued certificate %s for device %s (organisation %s), valid until %s:\n  %s\n  %s\n",
			is.Serial, is.Device, is.Org, is.NotAfter.Format(time.RFC3339), certPath, keyPath)
		fmt.Fprintf(stdout, "Connect with it: mosquitto_pub -p 8883 --cafile SERVER-CA.pem --cert %s --key %s -t tend/v1/devices/%s/obs -q 1 -m '[...]'\n",
			certPath, keyPath, is.Device)
	case "revoke":
		var revoked []store.DeviceCert
		if *serial != "" {
			c, err := a.RevokeSerial(ctx, *serial)
			if err != nil {
				return fail(1, "%v", err)
			}
			revoked = append(revoked, c)
		} else if revoked, err = a.RevokeDevice(ctx, *device); err != nil {
			return fail(1, "%v", err)
		}
		for _, c := range revoked {
			fmt.Fprintf(stdout, "revoked %s (device %s) at %s\n", c.Serial, c.Device, c.Revoked.Format(time.RFC3339))
		}
		if len(revoked) == 0 {
			fmt.Fprintln(stdout, "no valid certificate to revoke")
		}
		fmt.Fprintf(stdout, "Running nodes refuse it at the next handshake and close open connections within %s.\n", deviceca.DefaultWatchInterval)
	case "list":
		certs, err := st.DeviceCerts(ctx, *device)
		if err != nil {
			return fail(1, "%v", err)
		}
		for _, c := range certs {
			state := "valid"
			if !c.Revoked.IsZero() {
				state = "revoked " + c.Revoked.Format(time.RFC3339)
			}
			fmt.Fprintf(stdout, "%s  issued %s  until %s  %s\n", c.Serial, c.Issued.Format(time.RFC3339), c.NotAfter.Format(time.RFC3339), state)
		}
	}
	return 0
}

// loadCAKey reads the key file; with create, a missing file is created
// with a new key (0600).
func loadCAKey(path string, create bool) (deviceca.Key, bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && create {
		k, err := deviceca.NewKey()
		if err != nil {
			return deviceca.Key{}, false, err
		}
		if err := writeNew(path, []byte(k.Encode()+"\n"), 0o600, false); err != nil {
			return deviceca.Key{}, false, err
		}
		return k, true, nil
	}
	if err != nil {
		return deviceca.Key{}, false, fmt.Errorf("--ca-key-file: %w", err)
	}
	k, err := deviceca.ParseKey(b)
	if err != nil {
		return deviceca.Key{}, false, fmt.Errorf("--ca-key-file %s: %w", path, err)
	}
	return k, false, nil
}

// writeNew writes a file with mode from the first byte on (a key is never
// readable by others, even for a moment); without replace an existing file
// is an error.
func writeNew(path string, data []byte, mode os.FileMode, replace bool) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if replace {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, mode)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(mode); err != nil { // an existing file keeps its mode on O_TRUNC
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// caKeyFromFile reads --ca-key-file for tend serve ("" is none).
func caKeyFromFile(path string) (*deviceca.Key, error) {
	if path == "" {
		return nil, nil
	}
	k, _, err := loadCAKey(path, false)
	if err != nil {
		return nil, err
	}
	return &k, nil
}
