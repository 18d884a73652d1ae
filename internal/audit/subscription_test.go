package audit

import (
	"net/http/httptest"
	"testing"
)

func TestClassifySubscription(t *testing.T) {
	for _, tc := range []struct {
		method, path string
		action       Action
	}{
		{"POST", "/fhir/Subscription", Create},
		{"GET", "/fhir/Subscription/s1", Read},
		{"DELETE", "/fhir/Subscription/s1", Delete},
		{"GET", "/fhir/Subscription/s1/$status", Search},
	} {
		c, ok := Classify(httptest.NewRequest(tc.method, tc.path, nil))
		if !ok || c.Action != tc.action {
			t.Errorf("%s %s: %+v %v, want action %v", tc.method, tc.path, c, ok, tc.action)
		}
	}
}
