"""A fake Kaggle API on 127.0.0.1 that answers the real `kaggle` client's calls.

The client posts `/v1/<service>/<Method>` with a camelCase JSON body; uploads are a PUT to the
URL a Start...Upload call returned; a data download is a 302 to a .zip. Every request is kept
in `server.received` so that tests can assert on what Kaggle would have been sent.
"""

import base64
import json
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "kagat-test-token-0123456789"  # the one access token the fake accepts
USER, KEY = "kituser", "legacy-key-9876543210"  # and the one legacy key


class FakeKaggle:
    def __init__(self):
        self.received = []  # dicts: method, path, call, body (JSON or bytes), auth
        self.zips = {}  # competition slug -> the bytes of its data zip
        self.rules_accepted = True
        self.fail_upload = False  # answer the file PUT with 500
        self.score_error = None  # score every submission as ERROR with this description
        self.public_score = "0.98765"
        self.polls_to_score = 2  # ListSubmissions calls that still see a new one PENDING
        self.submissions = []
        self.datasets = set()
        # GetDatasetStatus calls that see a new dataset or version still being processed, as
        # Kaggle takes a while to; a kernel pushed before then starts without the dataset
        self.processing_polls = 2
        self.processing = {}  # dataset ref -> status calls left until READY; None: it failed
        self.fails = set()  # dataset refs whose processing fails
        self.attached = {}  # kernel slug -> the dataset sources it was saved with
        self.blobs = {}  # upload token -> bytes received
        self.pending_uploads = {}  # upload token -> file name
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def calls(self, name: str) -> list:
        return [r["body"] for r in self.received if r["call"] == name]

    # --- the API methods the kit's commands use -------------------------------------------

    def authorized(self, auth: str) -> bool:
        basic = "Basic " + base64.b64encode(f"{USER}:{KEY}".encode()).decode()
        return auth in (f"Bearer {TOKEN}", basic)

    def IntrospectToken(self, body):
        ok = body.get("token") == TOKEN
        return 200, {"active": ok, "username": USER if ok else ""}

    def competition(self, body):
        """None if the competition exists and its rules are accepted, else the error reply."""
        slug = body.get("competitionName")
        if slug not in self.zips:
            return 404, {"code": 404, "message": f"Competition '{slug}' not found"}
        if not self.rules_accepted:
            return 403, {"code": 403, "message": "You must accept this competition's rules"}
        return None

    def DownloadDataFiles(self, body):
        return self.competition(body) or (302, f"/files/{body['competitionName']}.zip")

    def StartSubmissionUpload(self, body):
        if err := self.competition(body):
            return err
        token = f"submission-{len(self.pending_uploads) + 1}"
        self.pending_uploads[token] = body["fileName"]
        return 200, {"token": token, "createUrl": f"{self.url}/upload/{token}"}

    def CreateSubmission(self, body):
        if err := self.competition(body):
            return err
        token = body.get("blobFileTokens")
        if token not in self.blobs:
            return 400, {"code": 400, "message": "The submission file was not uploaded"}
        ref = 1000 + len(self.submissions)
        self.submissions.append({
            "ref": ref, "fileName": self.pending_uploads[token], "status": "PENDING",
            "description": body.get("submissionDescription", ""), "polls": 0,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        })  # fmt: skip
        return 200, {"message": "Successfully submitted", "ref": ref}

    def ListSubmissions(self, body):
        if err := self.competition(body):
            return err
        for s in self.submissions:
            s["polls"] += 1
            if s["status"] == "PENDING" and s["polls"] > self.polls_to_score:
                if self.score_error:
                    s |= {"status": "ERROR", "errorDescription": self.score_error}
                else:
                    s |= {"status": "COMPLETE", "publicScore": self.public_score}
        shown = [{k: v for k, v in s.items() if k != "polls"} for s in reversed(self.submissions)]
        return 200, {"submissions": shown}

    def GetDatasetStatus(self, body):
        ref = f"{body['ownerSlug']}/{body['datasetSlug']}"
        if ref not in self.datasets:
            return 404, {"code": 404, "message": "Dataset not found"}
        left = self.processing.get(ref, 0)
        if left is None:
            return 200, {"status": "FAILED"}
        if left > 0:
            self.processing[ref] = left - 1
            return 200, {"status": "BLOBS_RECEIVED" if left > 1 else "BLOBS_DECOMPRESSED"}
        return 200, {"status": "READY"}

    def ready(self, ref: str) -> bool:
        return ref in self.datasets and self.processing.get(ref, 0) == 0

    def StartBlobUpload(self, body):
        token = f"blob-{len(self.pending_uploads) + 1}"
        self.pending_uploads[token] = body["name"]
        return 200, {"token": token, "createUrl": f"{self.url}/upload/{token}"}

    def CreateDataset(self, body):
        ref = f"{body['ownerSlug']}/{body['slug']}"
        self.datasets.add(ref)
        self.processing[ref] = None if ref in self.fails else self.processing_polls
        return 200, {"ref": ref, "url": f"https://www.kaggle.com/datasets/{ref}", "error": ""}

    def CreateDatasetVersion(self, body):
        ref = f"{body['ownerSlug']}/{body['datasetSlug']}"
        if self.processing.get(ref, 0) is not None:
            self.processing[ref] = self.processing_polls  # the new version is processed too
        return 200, {"ref": ref, "url": f"https://www.kaggle.com/datasets/{ref}"}

    def SaveKernel(self, body):
        slug = body["slug"]
        url = f"https://www.kaggle.com/code/{slug}"
        sources = body.get("datasetDataSources", [])
        self.attached[slug] = [ref for ref in sources if self.ready(ref)]
        invalid = [ref for ref in sources if not self.ready(ref)]  # saved without them, as Kaggle
        refused = [] if self.rules_accepted else body.get("competitionDataSources", [])
        return 200, {"ref": f"/code/{slug}", "url": url, "versionNumber": 1,
                     "invalidDatasetSources": invalid,
                     "invalidCompetitionSources": refused}  # fmt: skip

    # --- HTTP ---------------------------------------------------------------------------

    def handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status, payload=b"", headers=()):
                body = json.dumps(payload).encode() if isinstance(payload, dict) else payload
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                if isinstance(payload, dict):
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def record(self, call, body):
                auth = self.headers.get("Authorization", "")
                with fake.lock:
                    fake.received.append(
                        {
                            "method": self.command,
                            "path": self.path,
                            "call": call,
                            "body": body,
                            "auth": auth,
                        }  # fmt: skip
                    )
                return auth

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                call = self.path.rsplit("/", 1)[-1]
                body = json.loads(raw or b"{}")
                auth = self.record(call, body)
                if call != "IntrospectToken" and not fake.authorized(auth):
                    return self.reply(401, {"code": 401, "message": "Unauthenticated"})
                status, payload = getattr(fake, call)(body)
                if status == 302:
                    return self.reply(302, headers=[("Location", fake.url + payload)])
                self.reply(status, payload)

            def do_GET(self):
                self.record("GET", None)
                slug = self.path.removeprefix("/files/").removesuffix(".zip")
                if slug not in fake.zips:
                    return self.reply(404, b"not found")
                self.reply(200, fake.zips[slug], [("Content-Type", "application/zip")])

            def do_PUT(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                token = self.path.removeprefix("/upload/")
                self.record("PUT", raw)
                if fake.fail_upload:
                    return self.reply(500, b"upload failed")
                fake.blobs[token] = raw
                self.reply(200, b"")

        return Handler
