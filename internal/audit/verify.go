package audit

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"

	"github.com/tendhealth/tend/internal/store"
)

// Problem kinds Verify reports.
const (
	Altered   = "altered"   // the record's content does not match its hash
	Missing   = "deleted"   // a sequence number is missing
	Relinked  = "inserted"  // the record does not link to its predecessor
	Truncated = "truncated" // records at the end of the chain are gone
	Beyond    = "beyond"    // records after the chain head (appended outside Tend)
)

// Problem is the first break Verify found.
type Problem struct {
	Seq  int64  // the record at which the chain breaks
	Kind string // Altered, Missing, Relinked, Truncated or Beyond
}

func (p *Problem) Error() string {
	switch p.Kind {
	case Altered:
		return fmt.Sprintf("record %d was altered: its content does not match its hash", p.Seq)
	case Missing:
		return fmt.Sprintf("record %d is missing: deleted (or the records after it renumbered)", p.Seq)
	case Relinked:
		return fmt.Sprintf("record %d does not link to record %d: a record was inserted, deleted or replaced before it", p.Seq, p.Seq-1)
	case Truncated:
		return fmt.Sprintf("record %d is missing: the chain head says it exists, so the end of the trail was deleted", p.Seq)
	case Beyond:
		return fmt.Sprintf("record %d lies beyond the chain head: inserted outside Tend, or the head was rolled back", p.Seq)
	}
	return fmt.Sprintf("record %d: %s", p.Seq, p.Kind)
}

// Result is what Verify saw.
type Result struct {
	Count   int64    // records checked
	Head    []byte   // hash of the last good record
	Stored  []byte   // the stored chain head's hash
	Problem *Problem // nil when the chain is intact
}

// HeadHex is the chain head in hex, for recording outside Tend.
func (r Result) HeadHex() string { return hex.EncodeToString(r.Head) }

// verifyPage is how many records Verify reads at a time.
const verifyPage = 1000

// Verify walks the whole trail in sequence order and checks every link.
// It returns an error only when the store cannot be read; a broken chain
// is reported in Result.Problem.
func Verify(ctx context.Context, s store.AuditStore) (Result, error) {
	head, err := s.AuditHead(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("audit: read chain head: %w", err)
	}
	res := Result{Head: genesis, Stored: head.Hash}
	prev := genesis
	var expect int64 = 1
	var after int64
	for {
		page, err := s.AuditEntries(ctx, store.AuditQuery{AfterSeq: after, Limit: verifyPage})
		if err != nil {
			return Result{}, fmt.Errorf("audit: read records after %d: %w", after, err)
		}
		for _, e := range page {
			switch {
			case e.Seq > head.Seq:
				res.Problem = &Problem{Seq: e.Seq, Kind: Beyond}
			case e.Seq != expect:
				res.Problem = &Problem{Seq: expect, Kind: Missing}
			case !bytes.Equal(Hash(e), e.Hash):
				res.Problem = &Problem{Seq: e.Seq, Kind: Altered}
			case !bytes.Equal(e.PrevHash, prev):
				res.Problem = &Problem{Seq: e.Seq, Kind: Relinked}
			}
			if res.Problem != nil {
				return res, nil
			}
			prev, res.Head, res.Count = e.Hash, e.Hash, e.Seq
			expect++
			after = e.Seq
		}
		if len(page) < verifyPage {
			break
		}
	}
	switch {
	case head.Seq > res.Count:
		res.Problem = &Problem{Seq: res.Count + 1, Kind: Truncated}
	case head.Seq > 0 && !bytes.Equal(head.Hash, prev):
		// Same length, but the last record is not the one the head names.
		res.Problem = &Problem{Seq: head.Seq, Kind: Altered}
	}
	return res, nil
}
