package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/tendhealth/tend/internal/store"
)

// CreateDeviceCA stores an organisation's device CA.
func (s *Store) CreateDeviceCA(ctx context.Context, ca store.DeviceCA) error {
	if ca.Org == "" || len(ca.Cert) == 0 || len(ca.SealedKey) == 0 {
		return errors.New("sqlite: create device CA: org, certificate and key are required")
	}
	res, err := s.w.ExecContext(ctx, `INSERT INTO device_cas(org, cert, sealed_key, created) VALUES (?, ?, ?, ?)
		ON CONFLICT(org) DO NOTHING`, ca.Org, ca.Cert, ca.SealedKey, toNanos(ca.Created))
	if err != nil {
		return fmt.Errorf("sqlite: create device CA: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("sqlite: create device CA of %q: %w", ca.Org, store.ErrConflict)
	}
	return nil
}

// DeviceCA returns an organisation's device CA.
func (s *Store) DeviceCA(ctx context.Context, org string) (store.DeviceCA, error) {
	ca := store.DeviceCA{Org: org}
	var created int64
	err := s.r.QueryRowContext(ctx, `SELECT cert, sealed_key, created FROM device_cas WHERE org = ?`, org).
		Scan(&ca.Cert, &ca.SealedKey, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return store.DeviceCA{}, fmt.Errorf("sqlite: device CA of %q: %w", org, store.ErrNotFound)
	}
	if err != nil {
		return store.DeviceCA{}, fmt.Errorf("sqlite: device CA: %w", err)
	}
	ca.Created = fromNanos(created)
	return ca, nil
}

// DeviceCAs lists every device CA by organisation.
func (s *Store) DeviceCAs(ctx context.Context) ([]store.DeviceCA, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT org, cert, sealed_key, created FROM device_cas ORDER BY org`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: device CAs: %w", err)
	}
	defer rows.Close()
	var out []store.DeviceCA
	for rows.Next() {
		var ca store.DeviceCA
		var created int64
		if err := rows.Scan(&ca.Org, &ca.Cert, &ca.SealedKey, &created); err != nil {
			return nil, fmt.Errorf("sqlite: device CAs: %w", err)
		}
		ca.Created = fromNanos(created)
		out = append(out, ca)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: device CAs: %w", err)
	}
	return out, nil
}

// AddDeviceCert records an issued certificate.
func (s *Store) AddDeviceCert(ctx context.Context, c store.DeviceCert) error {
	if c.Serial == "" || c.Device == "" || c.Org == "" {
		return errors.New("sqlite: add device certificate: serial, device and org are required")
	}
	res, err := s.w.ExecContext(ctx, `INSERT INTO device_certs(serial, device_id, org, issued, not_after, revoked)
		VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(serial) DO NOTHING`,
		c.Serial, c.Device, c.Org, toNanos(c.Issued), toNanos(c.NotAfter), toNanos(c.Revoked))
	if err != nil {
		return fmt.Errorf("sqlite: add device certificate: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("sqlite: add device certificate %s: %w", c.Serial, store.ErrConflict)
	}
	return nil
}

const deviceCertCols = `serial, device_id, org, issued, not_after, revoked`

func scanDeviceCert(sc interface{ Scan(...any) error }) (store.DeviceCert, error) {
	var c store.DeviceCert
	var issued, notAfter, revoked int64
	if err := sc.Scan(&c.Serial, &c.Device, &c.Org, &issued, &notAfter, &revoked); err != nil {
		return store.DeviceCert{}, err
	}
	c.Issued, c.NotAfter, c.Revoked = fromNanos(issued), fromNanos(notAfter), fromNanos(revoked)
	return c, nil
}

// DeviceCert returns one recorded certificate. It reads through the
// writer: a revocation a moment ago must refuse the next handshake.
func (s *Store) DeviceCert(ctx context.Context, serial string) (store.DeviceCert, error) {
	c, err := scanDeviceCert(s.w.QueryRowContext(ctx, `SELECT `+deviceCertCols+` FROM device_certs WHERE serial = ?`, serial))
	if errors.Is(err, sql.ErrNoRows) {
		return store.DeviceCert{}, fmt.Errorf("sqlite: device certificate %s: %w", serial, store.ErrNotFound)
	}
	if err != nil {
		return store.DeviceCert{}, fmt.Errorf("sqlite: device certificate: %w", err)
	}
	return c, nil
}

func (s *Store) queryDeviceCerts(ctx context.Context, db *sql.DB, what, query string, args ...any) ([]store.DeviceCert, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %s: %w", what, err)
	}
	defer rows.Close()
	var out []store.DeviceCert
	for rows.Next() {
		c, err := scanDeviceCert(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: %s: %w", what, err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: %s: %w", what, err)
	}
	return out, nil
}

// DeviceCerts lists a device's certificates, oldest first.
func (s *Store) DeviceCerts(ctx context.Context, device string) ([]store.DeviceCert, error) {
	return s.queryDeviceCerts(ctx, s.r, "device certificates",
		`SELECT `+deviceCertCols+` FROM device_certs WHERE device_id = ? ORDER BY issued, serial`, device)
}

// RevokeDeviceCert revokes one certificate; the first revocation time stays.
func (s *Store) RevokeDeviceCert(ctx context.Context, serial string, at time.Time) (store.DeviceCert, error) {
	if at.IsZero() {
		return store.DeviceCert{}, errors.New("sqlite: revoke device certificate: time is required")
	}
	if _, err := s.w.ExecContext(ctx, `UPDATE device_certs SET revoked = ? WHERE serial = ? AND revoked = 0`, toNanos(at), serial); err != nil {
		return store.DeviceCert{}, fmt.Errorf("sqlite: revoke device certificate: %w", err)
	}
	return s.DeviceCert(ctx, serial)
}

// RevokeDeviceCerts revokes every valid certificate of a device.
func (s *Store) RevokeDeviceCerts(ctx context.Context, device string, at time.Time) ([]store.DeviceCert, error) {
	if at.IsZero() {
		return nil, errors.New("sqlite: revoke device certificates: time is required")
	}
	out, err := s.queryDeviceCerts(ctx, s.w, "revoke device certificates",
		`UPDATE device_certs SET revoked = ? WHERE device_id = ? AND revoked = 0 RETURNING `+deviceCertCols, toNanos(at), device)
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Issued.Equal(out[j].Issued) {
			return out[i].Issued.Before(out[j].Issued)
		}
		return out[i].Serial < out[j].Serial
	})
	return out, nil
}

// RevokedDeviceCertsSince lists certificates revoked at or after since.
func (s *Store) RevokedDeviceCertsSince(ctx context.Context, since time.Time) ([]store.DeviceCert, error) {
	return s.queryDeviceCerts(ctx, s.r, "revoked device certificates",
		`SELECT `+deviceCertCols+` FROM device_certs WHERE revoked > 0 AND revoked >= ? ORDER BY revoked, serial`, max(toNanos(since), 1))
}
