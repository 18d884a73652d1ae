package fhir

import "net/http"

// capabilityDate is when this statement last changed; bump it with the
// statement so clients caching it notice.
const capabilityDate = "2026-11-24"

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
	Mode          string           `json:"mode"`
	Documentation string           `json:"documentation,omitempty"`
	Security      *capSecurity     `json:"security,omitempty"`
	Resource      []capResource    `json:"resource"`
	Interaction   []capInteraction `json:"interaction,omitempty"`
	Operation     []capOperation   `json:"operation,omitempty"`
}

type capSecurity struct {
	Service     []capConcept `json:"service"`
	Description string       `json:"description"`
}

type capConcept struct {
	Coding []capCoding `json:"coding"`
}

type capCoding struct {
	System string `json:"system"`
	Code   string `json:"code"`
}

type capResource struct {
	Type              string           `json:"type"`
	Profile           string           `json:"profile,omitempty"`
	SupportedProfile  []string         `json:"supportedProfile,omitempty"`
	Documentation     string           `json:"documentation,omitempty"`
	Interaction       []capInteraction `json:"interaction"`
	Versioning        string           `json:"versioning"`
	ReadHistory       bool             `json:"readHistory"`
	UpdateCreate      bool             `json:"updateCreate"`
	ConditionalCreate bool             `json:"conditionalCreate,omitempty"`
	ConditionalUpdate bool             `json:"conditionalUpdate"`
	ConditionalDelete string           `json:"conditionalDelete,omitempty"`
	SearchInclude     []string         `json:"searchInclude,omitempty"`
	SearchParam       []capSearchParam `json:"searchParam,omitempty"`
	Operation         []capOperation   `json:"operation,omitempty"`
}

type capOperation struct {
	Name          string `json:"name"`
	Definition    string `json:"definition"`
	Documentation string `json:"documentation,omitempty"`
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
	handling := "Unknown parameters are ignored and reported in an outcome entry (Prefer: handling=lenient, the default) " +
		"or refused with 400 (Prefer: handling=strict); known parameters with values the server cannot honour are always refused."
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
			Documentation: "JSON only (application/fhir+json); XML is refused with 415. Writes honour Prefer: return=minimal|representation|OperationOutcome. " +
				"Invalid resources are refused with 400 (malformed) or 422 (breaks the profile) and an OperationOutcome whose expression names the element; " +
				"refused Observation and Bundle payloads are kept in the dead-letter store. " + handling,
			Interaction: interactions("batch", "transaction"),
			Security: &capSecurity{
				Service: []capConcept{{Coding: []capCoding{{System: "http://terminology.hl7.org/CodeSystem/restful-security-service", Code: "SMART-on-FHIR"}}}},
				Description: "Bearer tokens: API tokens of Tend's users and integrations, or SMART Backend Services access tokens " +
					"(client_credentials with private_key_jwt; see /.well-known/smart-configuration) whose SMART v2 scopes are enforced on every interaction. " +
					"Every answer is limited to the patients the caller may see, and every access is in the audit trail (AuditEvent).",
			},
			Operation: []capOperation{{Name: "export", Definition: "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
				Documentation: "Bulk Data export (Prefer: respond-async): Patient, Device, Observation as NDJSON, limited to the caller's patients and scopes; _type, _since"}},
			Resource: append([]capResource{
				{
					Type:              "Patient",
					Documentation:     "update honours If-Match (weak ETag of the version). " + conditionalCreateDoc + historyDoc,
					Interaction:       interactions("read", "vread", "update", "history-instance", "create", "search-type"),
					Versioning:        "versioned",
					ReadHistory:       false,
					UpdateCreate:      false,
					ConditionalCreate: true,
					SearchParam: append([]capSearchParam{
						{Name: "identifier", Type: "token", Documentation: "[system|]value; one value"},
					}, paging...),
					Operation: []capOperation{{Name: "everything", Definition: "http://hl7.org/fhir/OperationDefinition/Patient-everything",
						Documentation: "bounded: the Patient, one page of its Observations (newest first, _count per page, next link by _cursor) and the Devices they name; no start, end, _since or _type"},
						{Name: "export", Definition: "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export",
							Documentation: "Bulk Data export of the caller's patients (Prefer: respond-async)"}},
				},
				{
					Type: "Device",
					Documentation: "update honours If-Match (weak ETag of the version); Device.patient binds the device to a patient from now on. " + conditionalCreateDoc +
						"delete (admins only; honours If-Match) removes an unbound device with its identifiers, binding history and credentials, keeping its readings; " +
						"a device bound to a patient is refused with 409; a deleted id reads as 404. Delete is served for Device only. " + historyDoc,
					Interaction:       interactions("read", "vread", "update", "history-instance", "create", "delete"),
					ConditionalDelete: "not-supported",
					Versioning:        "versioned",
					ReadHistory:       false,
					UpdateCreate:      false,
					ConditionalCreate: true,
				},
				{
					Type:             "Observation",
					Profile:          profileBase + "vitalsigns",
					SupportedProfile: vital,
					Documentation: "create (POST, also as batch or transaction Bundle entries) is an ingest path: 201 only once the reading is durable, " +
						"and a reading with the subject, device, code and effective time of a stored one is answered 200 with the stored one. " +
						"Accepted: status final, amended or corrected; category vital-signs; a LOINC or MDC code of a known vital sign; " +
						"subject Patient/{id} and optional device Device/{id} that exist, the device not bound to another patient at the effective time; effectiveDateTime, effectiveInstant or effectivePeriod.start with a zone; " +
						"valueQuantity in a UCUM unit convertible to the code's unit, within the physiological range; blood pressure (85354-9) as components. " +
						"dataAbsentReason is recognised but such readings are not stored (422). Stored readings are rendered as final; other elements are not kept.",
					Interaction:       interactions("read", "create", "search-type"),
					Versioning:        "no-version",
					ReadHistory:       false,
					UpdateCreate:      false,
					ConditionalCreate: true,
					SearchInclude:     []string{"Observation:device"},
					SearchParam: append([]capSearchParam{
						{Name: "patient", Type: "reference", Documentation: "required unless _id is given (or subject=Patient/{id}); one patient"},
						{Name: "subject", Type: "reference", Documentation: "Patient/{id}"},
						{Name: "_id", Type: "token", Documentation: "comma-separated observation ids, at most 100"},
						{Name: "identifier", Type: "token", Documentation: "readings keep no business identifiers, so this matches nothing"},
						{Name: "code", Type: "token", Documentation: "http://loinc.org|code (system optional) or urn:iso:std:iso:11073:10101|MDC numeric code; comma means OR"},
						{Name: "category", Type: "token", Documentation: "vital-signs"},
						{Name: "status", Type: "token", Documentation: "final matches every stored reading; other statuses match nothing"},
						{Name: "device", Type: "reference", Documentation: "Device/{id} or {id}; comma means OR"},
						{Name: "date", Type: "date", Documentation: "prefixes eq, ne, gt, ge, lt, le, sa, eb, ap (a tenth of the distance from now either side); values without a zone are UTC"},
						{Name: "_sort", Type: "token", Documentation: "date (oldest first) or -date (newest first, the default)"},
						{Name: "_elements", Type: "string", Documentation: "top-level elements to return; mandatory ones are always returned and the result is tagged SUBSETTED"},
						{Name: "_cursor", Type: "string", Documentation: "set by next links: paging by the last result seen, which stays correct while readings arrive"},
					}, paging...),
					Operation: []capOperation{{Name: "lastn", Definition: "http://hl7.org/fhir/OperationDefinition/Observation-lastn",
						Documentation: "patient required; max (default 1, at most 100) newest per code; takes the search parameters above except _id, _cursor and _offset"}},
				},
				{
					Type: "AuditEvent",
					Documentation: "the hash-chained audit trail, to auditors and admins only (an organisation's own records; the installation operator's all); " +
						"reading it is itself audited",
					Interaction: interactions("read", "search-type"),
					Versioning:  "no-version",
					SearchParam: []capSearchParam{
						{Name: "patient", Type: "reference", Documentation: "Patient/{id} or {id}: records involving the patient"},
						{Name: "agent", Type: "reference", Documentation: "the user or client id who acted (also user, agent.who)"},
						{Name: "date", Type: "date", Documentation: "when recorded; prefixes ge, gt, le, lt, eq"},
						{Name: "_count", Type: "number", Documentation: "page size"},
					},
				},
			}, append(append(orgCapabilities(paging), locationCapabilities(paging)...), deviceMetricCapabilities(paging)...)...),
		}},
	}
}

// conditionalCreateDoc says what If-None-Exist does (conditional.go).
const conditionalCreateDoc = "create honours If-None-Exist: identifier=[system|]value, matched within the caller's organisation " +
	"(none: created, 201; one: 200 with it and Content-Location, nothing created, without a body for SMART clients since only their create scope was checked; " +
	"several, or one the caller cannot see: 412). "

// historyDoc says what instance history returns.
const historyDoc = "Instance history (_history) returns what is kept: the current version only (earlier versions are not kept, so vread of them is 404); " +
	"it takes _since and _count=0."

func (h *handler) metadata(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, capability())
	return nil
}
