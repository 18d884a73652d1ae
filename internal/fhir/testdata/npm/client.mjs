// Drives fhir-kit-client, a FHIR client library Tend did not write, through
// create, conditional create, transaction, refused input and paged search.
// Usage: node client.mjs BASE_URL TOKEN NOW_ISO. Prints one JSON summary.
import { Client } from 'fhir-kit-client';

const [baseUrl, token, nowISO] = process.argv.slice(2);
const client = new Client({ baseUrl, customHeaders: { Authorization: `Bearer ${token}` } });
const now = Date.parse(nowISO);
const vital = (code, value, unit, at, patient, device) => ({
  resourceType: 'Observation',
  status: 'final',
  category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
  code: { coding: [{ system: 'http://loinc.org', code }] },
  subject: { reference: `Patient/${patient}` },
  device: { reference: `Device/${device}` },
  effectiveDateTime: new Date(at).toISOString(),
  valueQuantity: { value, unit, system: 'http://unitsofmeasure.org', code: unit },
});
const failure = async (promise) => {
  try {
    await promise;
    return { status: 0 };
  } catch (err) {
    const data = err.response?.data ?? {};
    return { status: err.response?.status, expression: data.issue?.[0]?.expression?.[0] };
  }
};

const out = {};
const patient = await client.create({
  resourceType: 'Patient',
  body: { resourceType: 'Patient', identifier: [{ system: 'urn:example:mrn', value: 'NPM-1' }] },
});
const device = await client.create({
  resourceType: 'Device',
  body: { resourceType: 'Device', manufacturer: 'Acme', patient: { reference: `Patient/${patient.id}` } },
});

// One create, then the same reading again as a conditional create.
const first = vital('59408-5', 97, '%', now - 3600e3, patient.id, device.id);
const created = await client.create({ resourceType: 'Observation', body: first });
out.createdId = created.id;
const again = await client.create({
  resourceType: 'Observation', body: first,
  options: { headers: { 'If-None-Exist': `code=59408-5&date=${first.effectiveDateTime}` } },
});
out.conditionalId = again.id;

// A transaction of 60 heart rates, one a minute.
const entry = [];
for (let i = 0; i < 60; i++) {
  entry.push({
    fullUrl: `urn:uuid:00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
    resource: vital('8867-4', 60 + (i % 40), '/min', now - 4000e3 + i * 60e3, patient.id, device.id),
    request: { method: 'POST', url: 'Observation' },
  });
}
const tx = await client.transaction({ body: { resourceType: 'Bundle', type: 'transaction', entry } });
out.transactionType = tx.type;
out.transactionStatuses = [...new Set(tx.entry.map((e) => e.response.status))];

// A transaction with one bad entry is refused whole.
const bad = structuredClone(entry.slice(0, 2));
bad[1].resource.code.coding[0].code = '0000-0';
bad[0].resource.effectiveDateTime = new Date(now - 10e3).toISOString();
out.badTransaction = await failure(client.transaction({ body: { resourceType: 'Bundle', type: 'transaction', entry: bad } }));
out.invalidCreate = await failure(client.create({
  resourceType: 'Observation', body: { ...first, status: undefined },
}));

// Search with paging: follow next links to the end.
let bundle = await client.search({ resourceType: 'Observation', searchParams: { patient: patient.id, _count: 25 } });
out.total = bundle.total;
const ids = [];
let pages = 0;
while (bundle && pages < 10) {
  pages++;
  for (const e of bundle.entry ?? []) ids.push(e.resource.id);
  bundle = await client.nextPage({ bundle });
}
out.pages = pages;
out.seen = ids.length;
out.unique = new Set(ids).size;
const lastn = await client.request(`Observation/$lastn?patient=${patient.id}&max=2`);
out.lastn = lastn.entry.map((e) => e.resource.code.coding[0].code);
console.log(JSON.stringify(out));
