package web

// EventName is the SSE event name of a patient's tile, for the external
// tests that read the dashboard's stream as a browser would.
var EventName = eventName
