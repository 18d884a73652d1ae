package audit_test

import (
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/tendhealth/tend/internal/audit"
)

// TestClassifyFHIRViews: Location, DeviceMetric, conditional create and
// Device delete are recorded with the right action.
func TestClassifyFHIRViews(t *testing.T) {
	for _, tc := range []struct{ method, target, want string }{
		{"GET", "/fhir/Location?name=icu", "search/search-type/Location/[]"},
		{"GET", "/fhir/Location/WEST.2ICU.212.2A", "read/read/Location/WEST.2ICU.212.2A/[]"},
		{"GET", "/fhir/DeviceMetric?source=Device/d1", "search/search-type/DeviceMetric/[]"},
		{"GET", "/fhir/DeviceMetric/d1.28867-4", "read/read/DeviceMetric/d1.28867-4/[]"},
		{"POST", "/fhir/Patient", "create/create/Patient/[]"},
		{"DELETE", "/fhir/Device/d1", "delete/delete/Device/d1/[]"},
	} {
		c, ok := audit.Classify(httptest.NewRequest(tc.method, tc.target, nil))
		got := "-"
		if ok {
			got = fmt.Sprintf("%s/%s/%s/%v", c.Action, c.Subtype, c.Entity, c.Patients)
		}
		if got != tc.want {
			t.Errorf("%s %s = %s, want %s", tc.method, tc.target, got, tc.want)
		}
	}
}
