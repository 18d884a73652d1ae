package store

import "context"

// LocationSystem is the identifier system that says where a device is
// installed: its value is a location as Tend keeps it from HL7 PV1-3
// ("POINT/ROOM/BED", with the facility first when there is one, e.g.
// "WEST/ICU/12/A"). Several devices may share one location.
const LocationSystem = "urn:tend:location"

// DeviceFinder finds every device carrying an identifier.
type DeviceFinder interface {
	// DevicesByIdentifier returns the devices carrying ident (System may
	// be empty to match any system), ordered by id; none is an empty list.
	DevicesByIdentifier(ctx context.Context, ident Identifier) ([]Device, error)
}
