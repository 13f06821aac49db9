#!/usr/bin/env python3
"""A gRPC client of igrelay's gateway that is not igrelay's own code: Python grpcio with stubs
generated from proto/ at test time (grpc_tools.protoc).

Usage: gateway_client.py --addr HOST:PORT --key KEY [--emulator URL] [--account ID] SCENARIO

Scenarios print one JSON line per step on stdout and end with {"ok": true}; any failed check
raises (exit code 1) with the reason on stderr. Run with PYTHONPATH=.tools/py (see
deploy/local/setup.sh).
"""

import argparse
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
PROTO = os.path.join(ROOT, "proto")


def generate_stubs(out_dir):
    import grpc_tools

    wkt = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    files = [
        os.path.join("igrelay", "v1", f)
        for f in sorted(os.listdir(os.path.join(PROTO, "igrelay", "v1")))
        if f.endswith(".proto")
    ]
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", PROTO, "-I", wkt,
         "--python_out", out_dir, "--grpc_python_out", out_dir, *files],
        check=True,
    )


def log(**kw):
    print(json.dumps(kw), flush=True)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


class Client:
    def __init__(self, addr, key):
        import grpc
        from igrelay.v1 import gateway_pb2_grpc

        self.grpc = grpc
        self.channel = grpc.insecure_channel(addr)
        self.md = [("authorization", "Bearer " + key)]
        self.accounts = gateway_pb2_grpc.AccountsServiceStub(self.channel)
        self.messaging = gateway_pb2_grpc.MessagingServiceStub(self.channel)
        self.conversations = gateway_pb2_grpc.ConversationsServiceStub(self.channel)
        self.events = gateway_pb2_grpc.EventsServiceStub(self.channel)
        self.profiles = gateway_pb2_grpc.ProfilesServiceStub(self.channel)


def admin(emulator, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(emulator + path, data=data, method="GET" if body is None else "POST",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


class EventReader:
    """Reads a StreamEvents call on a thread into a queue; cancel() disconnects."""

    def __init__(self, c, request):
        self.call = c.events.StreamEvents(request, metadata=c.md)
        self.items = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            for item in self.call:
                self.items.put(item)
        except Exception as e:  # cancelled or failed: recorded for the reader
            self.items.put(e)

    def next(self, timeout=20):
        item = self.items.get(timeout=timeout)
        if isinstance(item, Exception):
            raise item
        return item

    def cancel(self):
        self.call.cancel()
        self.thread.join(timeout=10)


def recently():
    """A start time just before now: the stream may be opened after the first event is stored
    (the call starts on the reader thread), so "from now on" could miss it."""
    from google.protobuf import timestamp_pb2

    ts = timestamp_pb2.Timestamp()
    ts.FromSeconds(int(time.time()) - 2)
    return ts


def register(c, pb, account, token):
    from igrelay.v1 import accounts_pb2

    resp = c.accounts.RegisterAccount(
        pb.RegisterAccountRequest(account_id=account, login_type=accounts_pb2.LOGIN_TYPE_INSTAGRAM,
                                  access_token=token, username="emulated.business"),
        metadata=c.md)
    check(resp.account.account_id == account, "registered account id")
    check(resp.account.status == accounts_pb2.ACCOUNT_STATUS_ACTIVE, "registered account is active")
    got = c.accounts.GetAccount(pb.GetAccountRequest(account_id=account), metadata=c.md)
    check(got.account.status == accounts_pb2.ACCOUNT_STATUS_ACTIVE, "status ACTIVE")
    check(not hasattr(got.account, "access_token"), "no token in Account")
    listed = c.accounts.ListAccounts(pb.ListAccountsRequest(), metadata=c.md)
    check(account in [a.account_id for a in listed.accounts], "listed")
    log(step="register", account=account, created=resp.created)


def scenario_flow(c, args):
    """Register an account, stream the events of a simulated DM, send a message that the
    emulator receives, wait for its outcome, fetch it again by id."""
    from igrelay.v1 import commands_pb2, gateway_pb2 as pb

    account, user = args.account, "5500000000000077"
    register(c, pb, account, args.token)

    reader = EventReader(c, pb.StreamEventsRequest(account_ids=[account], kinds=["message"],
                                                   start_time=recently()))
    sim = admin(args.emulator, "/_admin/simulate/message",
                {"account": account, "from": user, "text": "hello from a user"})
    item = reader.next()
    check(item.kind == "message" and item.account_id == account, f"event kind/account: {item}")
    check(item.event.message.text == "hello from a user", "event text")
    check(item.event.message.sender_id == user, "event sender")
    check(item.event.message.mid == sim["mid"], "event mid")
    check(item.sequence > 0, "sequence")
    reader.cancel()
    log(step="event", sequence=item.sequence, mid=item.event.message.mid)

    cmd = commands_pb2.SendCommand(
        account_id=account,
        recipient=commands_pb2.Recipient(igsid=user),
        text=commands_pb2.TextContent(text="hi from python"))
    resp = c.messaging.SendMessage(
        pb.SendMessageRequest(command=cmd, wait=pb.WaitOptions(wait=True, timeout={"seconds": 30})),
        metadata=c.md, timeout=40)
    check(resp.command_id, "command id assigned")
    check(resp.outcome.WhichOneof("result") == "sent", f"outcome sent: {resp.outcome}")
    check(resp.outcome.sent.message_id, "message id")
    log(step="send", command_id=resp.command_id, message_id=resp.outcome.sent.message_id)

    again = c.messaging.GetOutcome(pb.GetOutcomeRequest(account_id=account, command_id=resp.command_id),
                                   metadata=c.md)
    check(again.outcome.sent.message_id == resp.outcome.sent.message_id, "GetOutcome")

    seen = admin(args.emulator, f"/_admin/messages?account={account}&user={user}")
    texts = [m.get("text") for m in seen.get("messages", seen if isinstance(seen, list) else [])]
    check("hi from python" in texts, f"emulator received the message: {seen}")
    log(step="emulator", texts=texts)

    # No wait: the id comes back at once, the outcome later.
    quick = c.messaging.SendMessage(
        pb.SendMessageRequest(command=commands_pb2.SendCommand(
            account_id=account, command_id="py-cmd-2",
            recipient=commands_pb2.Recipient(igsid=user),
            text=commands_pb2.TextContent(text="second"))),
        metadata=c.md)
    check(quick.command_id == "py-cmd-2" and not quick.HasField("outcome"), "immediate answer")
    later = c.messaging.GetOutcome(
        pb.GetOutcomeRequest(account_id=account, command_id="py-cmd-2",
                             wait=pb.WaitOptions(wait=True, timeout={"seconds": 30})),
        metadata=c.md, timeout=40)
    check(later.outcome.WhichOneof("result") == "sent", "later outcome")
    log(step="get_outcome", command_id=quick.command_id)


def scenario_resume(c, args):
    """Stream, disconnect, let events happen, resume after the last sequence received: the
    missed events arrive in order, nothing twice."""
    from igrelay.v1 import gateway_pb2 as pb

    account, user = args.account, "5500000000000088"
    register(c, pb, account, args.token)
    reader = EventReader(c, pb.StreamEventsRequest(account_ids=[account], kinds=["message"],
                                                   start_time=recently()))
    admin(args.emulator, "/_admin/simulate/message", {"account": account, "from": user, "text": "one"})
    first = reader.next()
    check(first.event.message.text == "one", "first event")
    reader.cancel()
    log(step="disconnected", after=first.sequence)

    for text in ["two", "three"]:
        admin(args.emulator, "/_admin/simulate/message", {"account": account, "from": user, "text": text})

    resumed = EventReader(c, pb.StreamEventsRequest(account_ids=[account], kinds=["message"],
                                                    after_sequence=first.sequence))
    got = [resumed.next(), resumed.next()]
    texts = [g.event.message.text for g in got]
    check(texts == ["two", "three"], f"resumed events {texts}")
    check(got[0].sequence > first.sequence and got[1].sequence > got[0].sequence, "sequences increase")
    resumed.cancel()
    log(step="resumed", texts=texts, sequences=[g.sequence for g in got])

    # From the time the first was stored: all three again.
    from_time = EventReader(c, pb.StreamEventsRequest(account_ids=[account], kinds=["message"],
                                                      start_time=first.stored_time))
    time_texts = [from_time.next().event.message.text for _ in range(3)]
    from_time.cancel()
    check(time_texts == ["one", "two", "three"], f"from start_time {time_texts}")
    log(step="from_time", texts=time_texts)

    # From the beginning sees all three.
    everything = EventReader(c, pb.StreamEventsRequest(account_ids=[account], kinds=["message"],
                                                       from_beginning=True))
    all_texts = [everything.next().event.message.text for _ in range(3)]
    everything.cancel()
    check(all_texts == ["one", "two", "three"], f"from beginning {all_texts}")
    log(step="from_beginning", texts=all_texts)


def scenario_errors(c, args):
    """The gateway's error statuses as a grpcio client sees them."""
    from igrelay.v1 import accounts_pb2, commands_pb2, gateway_pb2 as pb

    grpc = c.grpc
    account = args.account

    def code_of(call, *a, metadata=None, **kw):
        try:
            call(*a, metadata=c.md if metadata is None else metadata, **kw)
        except grpc.RpcError as e:
            return e.code(), e.details(), dict(e.trailing_metadata() or [])
        raise AssertionError(f"{call} succeeded")

    register(c, pb, account, args.token)
    text = commands_pb2.SendCommand(account_id=account, recipient=commands_pb2.Recipient(igsid="5500000000000002"),
                                    text=commands_pb2.TextContent(text="hi"))

    code, _, _ = code_of(c.accounts.ListAccounts, pb.ListAccountsRequest(), metadata=[])
    check(code == grpc.StatusCode.UNAUTHENTICATED, f"no key: {code}")
    code, _, _ = code_of(c.accounts.ListAccounts, pb.ListAccountsRequest(), metadata=[("x-api-key", "wrong")])
    check(code == grpc.StatusCode.UNAUTHENTICATED, f"wrong key: {code}")
    log(step="unauthenticated")

    reader = [("authorization", "Bearer " + args.reader_key)]
    code, details, _ = code_of(c.messaging.SendMessage, pb.SendMessageRequest(command=text), metadata=reader)
    check(code == grpc.StatusCode.PERMISSION_DENIED and "messages:send" in details, f"scope: {code} {details}")
    limited = [("authorization", "Bearer " + args.limited_key)]
    code, _, _ = code_of(c.messaging.SendMessage, pb.SendMessageRequest(command=text), metadata=limited)
    check(code == grpc.StatusCode.PERMISSION_DENIED, f"other account: {code}")
    log(step="permission_denied")

    bad = commands_pb2.SendCommand(account_id=account)
    code, details, trailers = code_of(c.messaging.SendMessage, pb.SendMessageRequest(command=bad))
    check(code == grpc.StatusCode.INVALID_ARGUMENT, f"invalid: {code}")
    check("command.recipient" in details and "command.content" in details, details)
    # google.rpc.Status with a google.rpc.BadRequest, in the standard trailer.
    raw = trailers.get("grpc-status-details-bin", b"")
    check(b"type.googleapis.com/google.rpc.BadRequest" in raw and b"command.recipient" in raw, f"details {raw!r}")
    log(step="invalid_argument", details=details)

    code, _, _ = code_of(c.accounts.GetAccount, pb.GetAccountRequest(account_id="123"))
    check(code == grpc.StatusCode.NOT_FOUND, f"not found: {code}")
    code, _, _ = code_of(c.messaging.GetOutcome, pb.GetOutcomeRequest(account_id=account, command_id="nope"))
    check(code == grpc.StatusCode.NOT_FOUND, f"no outcome: {code}")
    log(step="not_found")

    code, _, _ = code_of(c.messaging.SendMessage,
                         pb.SendMessageRequest(command=text, wait=pb.WaitOptions(wait=True, timeout={"nanos": 300_000_000})))
    check(code == grpc.StatusCode.DEADLINE_EXCEEDED, f"deadline: {code}")
    log(step="deadline_exceeded")


def scenario_profiles(c, args):
    """A user writes; their profile on demand (enrich answers through the gateway); forgetting
    the user; the profile is then refused for want of consent."""
    from igrelay.v1 import gateway_pb2 as pb, profiles_pb2

    grpc = c.grpc
    account = args.account
    user = "5500000000000077"
    register(c, pb, account, args.token)
    admin(args.emulator, "/_admin/simulate/message", {"account": account, "from": user, "text": "hello"})
    request = profiles_pb2.GetUserProfileRequest(account_id=account, igsid=user)
    # Enrich records the consent when it takes the DM's event: until then the answer is
    # FAILED_PRECONDITION (NO_CONSENT). Bounded wait.
    got = None
    for _ in range(200):
        try:
            got = c.profiles.GetUserProfile(request, metadata=c.md)
            break
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.FAILED_PRECONDITION, f"before consent: {e.code()} {e.details()}")
            time.sleep(0.05)
    check(got is not None, "a profile once enrich saw the DM")
    check(got.profile.igsid == user and got.profile.account_id == account, f"profile {got}")
    check(got.profile.username != "", "username")
    log(step="profile", username=got.profile.username, from_cache=got.from_cache)

    forgot = c.profiles.ForgetUser(profiles_pb2.ForgetUserRequest(igsid=user, account_id=account), metadata=c.md)
    check(forgot.confirmation_code != "" and forgot.status_url.endswith(forgot.confirmation_code), f"{forgot}")
    check(forgot.entries_purged >= 2 and forgot.error == "", f"{forgot}")
    log(step="forgotten", code=forgot.confirmation_code, entries=forgot.entries_purged)

    try:
        c.profiles.GetUserProfile(request, metadata=c.md)
        raise AssertionError("a profile after ForgetUser")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.FAILED_PRECONDITION, f"after forget: {e.code()}")
        raw = dict(e.trailing_metadata() or []).get("grpc-status-details-bin", b"")
        check(b"type.googleapis.com/google.rpc.ErrorInfo" in raw and b"NOT_ENRICHED_REASON_NO_CONSENT" in raw,
              f"details {raw!r}")
    log(step="no_consent")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--addr", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--emulator", default="")
    p.add_argument("--account", default="17841400000000001")
    p.add_argument("--token", default="IGAAemulatortoken1")
    p.add_argument("--reader-key", default="")
    p.add_argument("--limited-key", default="")
    p.add_argument("scenario", choices=["flow", "resume", "errors", "profiles"])
    args = p.parse_args()
    stubs = tempfile.mkdtemp(prefix="igrelay-stubs-")
    generate_stubs(stubs)
    sys.path.insert(0, stubs)
    c = Client(args.addr, args.key)
    scenarios = {"flow": scenario_flow, "resume": scenario_resume, "errors": scenario_errors,
                 "profiles": scenario_profiles}
    scenarios[args.scenario](c, args)
    log(ok=True)


if __name__ == "__main__":
    main()
