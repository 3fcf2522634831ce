// $connect in Node.js with the AWS SDK v3, as a user would write it: verify an HS256 JWT from
// ?token=, PutItem the connection, reply 200. Served by a minimal Lambda Runtime API loop.
import http from "node:http";
import crypto from "node:crypto";
import { DynamoDBClient, PutItemCommand } from "@aws-sdk/client-dynamodb";

const client = new DynamoDBClient({ endpoint: process.env.AWS_ENDPOINT_URL_DYNAMODB });
const secret = process.env.JWT_SECRET;
const table = process.env.TABLE_NAME;
const [host, port] = process.env.AWS_LAMBDA_RUNTIME_API.split(":");
const agent = new http.Agent({ keepAlive: true });

function request(method, path, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port, method, path: "/2018-06-01" + path, agent }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => resolve({ headers: res.headers, body: Buffer.concat(chunks).toString() }));
    });
    req.on("error", reject);
    if (body) req.setHeader("Content-Type", "application/json");
    req.end(body);
  });
}

function verify(token) {
  const [h, p, s] = (token || "").split(".");
  if (!s) return null;
  const mac = crypto.createHmac("sha256", secret).update(`${h}.${p}`).digest("base64url");
  if (!crypto.timingSafeEqual(Buffer.from(mac), Buffer.from(s))) return null;
  const claims = JSON.parse(Buffer.from(p, "base64url").toString());
  if (!claims.exp || claims.exp < Date.now() / 1000) return null;
  return claims.sub;
}

async function handler(event) {
  const user = verify(event.queryStringParameters?.token);
  if (!user) return { statusCode: 401 };
  const id = event.requestContext.connectionId;
  await client.send(new PutItemCommand({
    TableName: table,
    Item: {
      pk: { S: `CONN#${id}` }, sk: { S: "CONN" }, user_id: { S: user },
      connected_at: { N: String(Date.now()) },
      expires_at: { N: String(Math.floor(Date.now() / 1000) + 7800) },
    },
  }));
  return { statusCode: 200 };
}

for (;;) {
  const next = await request("GET", "/runtime/invocation/next");
  const id = next.headers["lambda-runtime-aws-request-id"];
  try {
    const out = await handler(JSON.parse(next.body));
    await request("POST", `/runtime/invocation/${id}/response`, JSON.stringify(out));
  } catch (e) {
    await request("POST", `/runtime/invocation/${id}/error`, JSON.stringify({ errorType: "Error", errorMessage: String(e) }));
  }
}
