// Score cutouts on a lenscal scorer from the .proto alone (no lenscal code).
// usage: node score_client.js PROTO_ROOT ENDPOINT CUTOUTS_F32_FILE COUNT
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");
const fs = require("fs");
const path = require("path");

const [protoRoot, endpoint, cutoutFile, countText] = process.argv.slice(2);
const definition = protoLoader.loadSync(path.join(protoRoot, "lenscal/scorer/v1/scorer.proto"), {
  includeDirs: [protoRoot], keepCase: true, longs: String, enums: String, defaults: true,
});
const scorerPackage = grpc.loadPackageDefinition(definition).lenscal.scorer.v1;
const client = new scorerPackage.Scorer(endpoint, grpc.credentials.createInsecure());
const count = Number(countText);
const data = fs.readFileSync(cutoutFile);  // little-endian float32, (count, 3, 101, 101)
const deadline = new Date(Date.now() + 60000);

client.GetModelInfo({}, { deadline }, (infoError, info) => {
  if (infoError) { console.error(infoError); process.exit(2); }
  const request = {
    batch: { data, count, channels: 3, height: 101, width: 101, dtype: "FLOAT32",
             ids: Array.from({ length: count }, (_, i) => `node-${i}`) },
  };
  client.Score(request, { deadline }, (error, reply) => {
    if (error) { console.error(error); process.exit(3); }
    console.log(JSON.stringify({
      architecture: info.models[0].architecture, model_id: reply.model_id,
      ids: reply.ids, logits: reply.logits, probabilities: reply.probabilities,
    }));
    process.exit(0);
  });
});
