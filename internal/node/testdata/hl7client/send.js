// Sends HL7 v2 messages to an MLLP server with the simple-hl7 client, as a
// real sender does: one connection, the next message after the previous
// ACK. Prints one JSON line per ACK with MSA-1 (code), MSA-2 (the control id
// it answers) and the ERR segments. Usage: node send.js HOST PORT FILE...
'use strict';
const fs = require('fs');
const hl7 = require('simple-hl7');

const [host, port, ...files] = process.argv.slice(2);
const messages = files.map((f) => fs.readFileSync(f, 'utf8').replace(/\r\n|\n/g, '\r'));
const client = hl7.Server.createTcpClient({ host, port: Number(port), keepalive: true });

let next = 0;
function sendNext() {
  if (next >= messages.length) {
    client.close();
    return;
  }
  const msg = messages[next++];
  client.send(msg, (err, ack) => {
    if (err) {
      console.error('send failed:', err.message);
      process.exit(1);
    }
    const msa = ack.getSegment('MSA');
    const errs = ack.getSegments('ERR').map((s) => s.toString(ack.header.delimiters));
    console.log(JSON.stringify({ code: msa.getField(1), control: msa.getField(2), err: errs }));
    setImmediate(sendNext); // the client clears its busy flag after this callback
  });
}

setTimeout(() => {
  console.error('timed out waiting for ACKs');
  process.exit(1);
}, 20000).unref();
sendNext();
