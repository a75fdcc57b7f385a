#!/usr/bin/env python3
"""A CRM on the gRPC API in Python (grpcio): start a provisioning (idempotent
on the order id), wait for its outcome webhook (or poll), wait for an
approval step and send its signal, and repair a failed run the way an
operator would (retry with a context patch). Every outcome is checked: the
script exits non-zero when one is not what it should be.

The stubs are generated from the proto at start (grpcio-tools) unless
`sagaflow.v1.sagaflow_pb2` is importable already:

    python3 -m venv .venv && .venv/bin/pip install grpcio-tools
    .venv/bin/python examples/python/crm.py

Environment (all optional):
  SAGAFLOW_GRPC    the gRPC address (default 127.0.0.1:50051)
  CRM_TOKEN        the CRM's token (default dev-crm)
  OPERATOR_TOKEN   the operator's token for the retry (default dev-operator)
  ORDER            the CRM's order id (default order-<pid>)
  SAGAFLOW_PROTO   the proto directory (default ../../proto beside this file)
  WEBHOOK_PORT     listen on 127.0.0.1:<port> for the run-outcome webhooks
                   (configured in sagaflow as http://127.0.0.1:<port>/hook);
                   unset: poll GetWorkflow instead
  WEBHOOK_SECRET   the webhook's secret (its signatures are checked)

With a receiver, the last line printed is a JSON summary of the deliveries
it received: [{"delivery_id", "event", "run_id", "signature_valid"}, ...].
"""

import hashlib
import hmac
import importlib
import json
import os
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TERMINAL = {"COMPLETED", "COMPENSATED", "CANCELLED", "TERMINATED"}
WAIT_SECONDS = 60


def stubs():
    """The generated modules (sagaflow_pb2, sagaflow_pb2_grpc), generating
    them from the proto into a temporary directory when they are not
    importable."""
    try:
        return (importlib.import_module("sagaflow.v1.sagaflow_pb2"),
                importlib.import_module("sagaflow.v1.sagaflow_pb2_grpc"))
    except ImportError:
        pass
    from importlib import resources

    from grpc_tools import protoc

    here = os.path.dirname(os.path.abspath(__file__))
    proto = os.environ.get("SAGAFLOW_PROTO", os.path.join(here, "..", "..", "proto"))
    out = tempfile.mkdtemp(prefix="sagaflow-stubs-")
    well_known = str(resources.files("grpc_tools") / "_proto")
    code = protoc.main(["protoc", f"-I{proto}", f"-I{well_known}",
                        f"--python_out={out}", f"--grpc_python_out={out}",
                        os.path.join(proto, "sagaflow", "v1", "sagaflow.proto")])
    if code != 0:
        sys.exit(f"protoc failed ({code}) on {proto}")
    sys.path.insert(0, out)
    return (importlib.import_module("sagaflow.v1.sagaflow_pb2"),
            importlib.import_module("sagaflow.v1.sagaflow_pb2_grpc"))


def verified(secret: bytes, body: bytes, header: str) -> bool:
    """Whether `header` (X-Sagaflow-Signature) signs the raw `body`."""
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


class Receiver:
    """The CRM's webhook endpoint: checks each delivery's signature,
    acknowledges it (2xx) and keeps it; a bad signature is refused (401)."""

    def __init__(self, port: int, secret: bytes):
        self.secret = secret
        self.deliveries = []
        self.cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                valid = verified(receiver.secret, body,
                                 self.headers.get("X-Sagaflow-Signature", ""))
                if not valid:
                    self.send_response(401)
                    self.end_headers()
                    return
                d = json.loads(body)
                header_id = self.headers.get("X-Sagaflow-Delivery")
                with receiver.cond:
                    receiver.deliveries.append({
                        "delivery_id": d["delivery_id"],
                        "event": d["event"],
                        "run_id": d["workflow"]["id"],
                        "state": d["workflow"]["state"],
                        "signature_valid": valid,
                        "headers_match": header_id == d["delivery_id"]
                        and self.headers.get("X-Sagaflow-Event") == d["event"],
                    })
                    receiver.cond.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, run_id: str, event: str) -> dict:
        """The delivery of `event` for the run, once it has arrived."""
        deadline = time.monotonic() + WAIT_SECONDS
        with self.cond:
            while True:
                for d in self.deliveries:
                    if d["run_id"] == run_id and d["event"] == event:
                        return d
                left = deadline - time.monotonic()
                if left <= 0:
                    sys.exit(f"no {event} webhook for run {run_id} within {WAIT_SECONDS} s")
                self.cond.wait(left)


class Crm:
    def __init__(self, pb, pb_grpc, channel, token: str, operator: str):
        self.pb = pb
        self.workflows = pb_grpc.WorkflowServiceStub(channel)
        self.crm = [("authorization", f"Bearer {token}")]
        self.operator = [("authorization", f"Bearer {operator}")]

    def struct(self, value: dict):
        from google.protobuf import struct_pb2

        s = struct_pb2.Struct()
        s.update(value)
        return s

    def state(self, run_id: str) -> str:
        run = self.workflows.GetWorkflow(self.pb.GetWorkflowRequest(id=run_id),
                                         metadata=self.crm)
        return self.pb.WorkflowState.Name(run.state).removeprefix("WORKFLOW_STATE_")

    def poll(self, run_id: str, *states: str) -> str:
        """Polls the run until it is in one of `states` (short names)."""
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            state = self.state(run_id)
            if state in states:
                return state
            time.sleep(0.2)
        sys.exit(f"run {run_id} still {state} after {WAIT_SECONDS} s")

    def start(self, workflow: str, value: dict, order: str = ""):
        return self.workflows.StartWorkflow(
            self.pb.StartWorkflowRequest(workflow_name=workflow, input=self.struct(value),
                                         idempotency_key=order),
            metadata=self.crm)


def expect(what: str, got, want):
    if got != want:
        sys.exit(f"{what}: {got!r}, expected {want!r}")


def main():
    pb, pb_grpc = stubs()
    import grpc

    order = os.environ.get("ORDER", f"order-{os.getpid()}")
    channel = grpc.insecure_channel(os.environ.get("SAGAFLOW_GRPC", "127.0.0.1:50051"))
    crm = Crm(pb, pb_grpc, channel, os.environ.get("CRM_TOKEN", "dev-crm"),
              os.environ.get("OPERATOR_TOKEN", "dev-operator"))
    receiver = None
    if os.environ.get("WEBHOOK_PORT"):
        receiver = Receiver(int(os.environ["WEBHOOK_PORT"]),
                            os.environ.get("WEBHOOK_SECRET", "").encode())

    def outcome(run_id: str, event: str, *states: str) -> str:
        """Waits for the run's outcome: its webhook when there is a receiver
        (then the run is read once), else by polling."""
        if receiver:
            d = receiver.wait(run_id, event)
            print(f"  webhook {event} {d['delivery_id']} (signature valid)")
        return crm.poll(run_id, *states)

    # 1. A provisioning; the order id is the idempotency key, so sending the
    #    order again returns the same run.
    value = {"subscriber_id": f"sub-{order}", "plan": "fiber-300", "enable_ipv6": True,
             "customer": {"id": f"c-{order}", "name": "Ada Lovelace",
                          "email": "ada@example.net"},
             "nas": {"ip": "127.0.0.1"}, "onu_serial": f"ONU-{order}", "cpe_serial": f"CPE-{order}"}
    started = crm.start("provision_subscriber", value, order)
    run_id = started.workflow.id
    print(f"order {order}: run {run_id} (created={started.created})")
    expect("first start created", started.created, True)
    again = crm.start("provision_subscriber", value, order)
    expect("the order sent again: created", again.created, False)
    expect("the order sent again: run", again.workflow.id, run_id)
    final = outcome(run_id, "run_completed", *TERMINAL)
    expect(f"run {run_id}", final, "COMPLETED")
    print(f"run {run_id}: {final}")

    # 2. A run that waits for an approval: the CRM hears that it waits (or
    #    sees the step WAITING) and sends the signal.
    waiting = crm.start("demo_wait", {}).workflow.id
    if receiver:
        receiver.wait(waiting, "step_waiting")
        print(f"  webhook step_waiting for run {waiting}")
    else:
        crm.poll(waiting, "RUNNING")
    sent = crm.workflows.SignalWorkflow(
        pb.SignalWorkflowRequest(id=waiting, signal_name="approve",
                                 payload=crm.struct({"by": "crm.py"})),
        metadata=crm.crm)
    print(f"run {waiting}: approve sent (delivered={sent.delivered})")
    expect(f"run {waiting}", outcome(waiting, "run_completed", *TERMINAL), "COMPLETED")
    print(f"run {waiting}: COMPLETED")

    # 3. A run that fails at a step and waits for an operator (the demo saga
    #    fails where its input says), retried with the input corrected.
    failing = crm.start("demo_saga", {"demo": {"fail_step": "bill"}}).workflow.id
    expect(f"run {failing}", outcome(failing, "run_failed", "FAILED", *TERMINAL), "FAILED")
    run = crm.workflows.GetWorkflow(pb.GetWorkflowRequest(id=failing), metadata=crm.crm)
    failed_at = [s.name for s in run.steps if s.state == pb.STEP_STATE_FAILED]
    print(f"run {failing}: FAILED at {','.join(failed_at)}: {run.error}")
    expect("failed step", failed_at, ["bill"])
    try:
        crm.workflows.RetryWorkflow(pb.RetryWorkflowRequest(id=failing, reason="not allowed"),
                                    metadata=crm.crm)
        sys.exit("the CRM's token retried a run: it must not")
    except grpc.RpcError as e:
        expect("retry with the CRM's token", e.code(), grpc.StatusCode.PERMISSION_DENIED)
    crm.workflows.RetryWorkflow(
        pb.RetryWorkflowRequest(id=failing, reason="crm.py: input corrected",
                                context_patch=crm.struct({"demo": {}})),
        metadata=crm.operator)
    expect(f"run {failing} retried", outcome(failing, "run_completed", *TERMINAL),
           "COMPLETED")
    print(f"run {failing} retried: COMPLETED")

    if receiver:
        with receiver.cond:
            got = list(receiver.deliveries)
        for d in got:
            expect(f"delivery {d['delivery_id']} headers", d["headers_match"], True)
        print(json.dumps(got))


if __name__ == "__main__":
    main()
