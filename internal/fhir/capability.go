package fhir

import "net/http"

// capabilityDate is when this statement last changed; bump it with the
// statement so clients caching it notice.
const capabilityDate = "2026-11-23"

type capabilityStatement struct {
	ResourceType string      `json:"resourceType"`
	Status       string      `json:"status"`
	Date         string      `json:"date"`
	Kind         string      `json:"kind"`
	Software     capSoftware `json:"software"`
	// R4 requires implementation when kind is instance.
	Implementation capImplementation `json:"implementation"`
	FHIRVersion    string            `json:"fhirVersion"`
	Format         []string          `json:"format"`
	Rest           []capRest         `json:"rest"`
}

type capSoftware struct {
	Name string `json:"name"`
}

type capImplementation struct {
	Description string `json:"description"`
}

type capRest struct {
	Mode     string        `json:"mode"`
	Resource []capResource `json:"resource"`
}

type capResource struct {
	Type             string           `json:"type"`
	Profile          string           `json:"profile,omitempty"`
	SupportedProfile []string         `json:"supportedProfile,omitempty"`
	Interaction      []capInteraction `json:"interaction"`
	Versioning       string           `json:"versioning"`
	ReadHistory      bool             `json:"readHistory"`
	UpdateCreate     bool             `json:"updateCreate"`
	SearchParam      []capSearchParam `json:"searchParam,omitempty"`
}

type capInteraction struct {
	Code string `json:"code"`
}

type capSearchParam struct {
	Name          string `json:"name"`
	Type          string `json:"type"`
	Documentation string `json:"documentation,omitempty"`
}

func interactions(codes ...string) []capInteraction {
	out := make([]capInteraction, len(codes))
	for i, c := range codes {
		out[i] = capInteraction{Code: c}
	}
	return out
}

// capability states exactly what the handlers above implement.
func capability() capabilityStatement {
	vital := []string{}
	for _, p := range []string{"vitalsigns", "heartrate", "oxygensat", "resprate", "bodytemp", "bp", "bodyweight", "bodyheight", "bmi"} {
		vital = append(vital, profileBase+p)
	}
	paging := []capSearchParam{
		{Name: "_count", Type: "number", Documentation: "page size, default 50, at most 1000; 0 returns only the total"},
		{Name: "_offset", Type: "number", Documentation: "number of matches to skip"},
		{Name: "_summary", Type: "token", Documentation: "count returns only the total"},
	}
	return capabilityStatement{
		ResourceType:   "CapabilityStatement",
		Status:         "active",
		Date:           capabilityDate,
		Kind:           "instance",
		Software:       capSoftware{Name: "Tend"},
		Implementation: capImplementation{Description: "Tend FHIR R4 API"},
		FHIRVersion:    "4.0.1",
		Format:         []string{"json", contentTypeFHIR},
		Rest: []capRest{{
			Mode: "server",
			Resource: []capResource{
				{
					Type:         "Patient",
					Interaction:  interactions("read", "vread", "update", "create", "search-type"),
					Versioning:   "versioned",
					ReadHistory:  false,
					UpdateCreate: false,
					SearchParam: append([]capSearchParam{
						{Name: "identifier", Type: "token", Documentation: "[system|]value; one value"},
					}, paging...),
				},
				{
					Type:         "Device",
					Interaction:  interactions("read", "vread", "update", "create"),
					Versioning:   "versioned",
					ReadHistory:  false,
					UpdateCreate: false,
				},
				{
					Type:             "Observation",
					Profile:          profileBase + "vitalsigns",
					SupportedProfile: vital,
					Interaction:      interactions("read", "search-type"),
					Versioning:       "no-version",
					ReadHistory:      false,
					UpdateCreate:     false,
					SearchParam: append([]capSearchParam{
						{Name: "patient", Type: "reference", Documentation: "required (or subject=Patient/{id}); one patient"},
						{Name: "subject", Type: "reference", Documentation: "Patient/{id}"},
						{Name: "code", Type: "token", Documentation: "http://loinc.org|code (system optional) or urn:iso:std:iso:11073:10101|MDC numeric code; comma means OR"},
						{Name: "category", Type: "token", Documentation: "vital-signs"},
						{Name: "date", Type: "date", Documentation: "prefixes eq, gt, ge, lt, le, sa, eb; values without a zone are UTC"},
						{Name: "_sort", Type: "token", Documentation: "date (oldest first) or -date (newest first, the default)"},
					}, paging...),
				},
			},
		}},
	}
}

func (h *handler) metadata(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, capability())
	return nil
}
