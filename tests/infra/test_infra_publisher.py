"""The publisher policy: what a backend attaches to publish through the work queue, no more."""

from __future__ import annotations

import json

from infra_harness import ACCOUNT_ID, REGION, Deployment


def test_the_publisher_policy_sends_to_this_work_queue_and_nothing_else(
    deployment: Deployment,
) -> None:
    env = deployment.environment
    policy = deployment.one("aws:iam/policy:Policy", "publisher-policy")
    assert policy.inputs["name"] == f"streamer-{env}-publish"
    assert policy.inputs["tags"] == {"environment": env, "service": "streamer"}
    statements = {s["Sid"]: s for s in json.loads(policy.inputs["policy"])["Statement"]}
    assert set(statements) == {"SendToWorkQueue", "EncryptForWorkQueue"}
    send = statements["SendToWorkQueue"]
    assert send["Action"] == ["sqs:SendMessage"]
    assert send["Resource"] == [f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:queue/streamer-{env}-work"]
    encrypt = statements["EncryptForWorkQueue"]
    assert encrypt["Action"] == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert encrypt["Resource"] == [deployment.outputs["kmsKeyArn"]]
    assert encrypt["Condition"] == {
        "StringEquals": {"kms:ViaService": f"sqs.{REGION}.amazonaws.com"}
    }
    for statement in statements.values():
        assert statement["Effect"] == "Allow"
        assert "*" not in statement["Resource"]


def test_the_stack_exports_the_queue_and_the_policy_a_publisher_needs(
    deployment: Deployment,
) -> None:
    outputs = deployment.outputs
    policy = deployment.one("aws:iam/policy:Policy", "publisher-policy")
    assert outputs["publisherPolicyArn"] == policy.outputs["arn"]
    assert outputs["workQueueUrl"].endswith(f"streamer-{deployment.environment}-work")
    # Attaching it is the account owner's decision: the stack attaches it to nothing.
    assert not deployment.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert not deployment.of_type("aws:iam/policyAttachment:PolicyAttachment")
