// Azurite helper for tests/archive.rs, through Azure's own SDK:
//   node azurite.js create PORT CONTAINER          make a container
//   node azurite.js flip PORT CONTAINER PREFIX     flip a byte in the last
//                                                  blob under PREFIX; prints its name
const { BlobServiceClient } = require('@azure/storage-blob');

// Azurite's documented development account (public, not a secret).
const KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

async function main() {
  const [cmd, port, container, prefix] = process.argv.slice(2);
  const conn = `DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=${KEY};` +
    `BlobEndpoint=http://127.0.0.1:${port}/devstoreaccount1;`;
  const client = BlobServiceClient.fromConnectionString(conn).getContainerClient(container);
  if (cmd === 'create') {
    await client.createIfNotExists();
  } else if (cmd === 'flip') {
    let last;
    for await (const blob of client.listBlobsFlat({ prefix })) last = blob.name;
    if (!last) throw new Error(`no blob under ${prefix}`);
    const blob = client.getBlockBlobClient(last);
    const body = await blob.downloadToBuffer();
    body[Math.floor(body.length / 2)] ^= 1;
    await blob.uploadData(body);
    console.log(last);
  } else {
    throw new Error(`unknown command ${cmd}`);
  }
}

main().catch((e) => { console.error(e.message); process.exit(1); });
