"""The relay on Fargate: ARM64, sticky ALB open to CloudFront only, drain-friendly deploys."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk.assertions import Match, Template

from infra.constructs.relay_service import CLOUDFRONT_PREFIX_LISTS, ORIGIN_HEADER
from tests.infra.conftest import Synthesized


def _attributes(resource: dict[str, Any], key: str) -> dict[str, str]:
    return {a["Key"]: a["Value"] for a in resource["Properties"][key]}


def _container(synthesized: Synthesized) -> dict[str, Any]:
    task = synthesized.only("AWS::ECS::TaskDefinition")
    (container,) = task["Properties"]["ContainerDefinitions"]
    return dict(container)


def test_task_runs_on_arm64_with_a_120_second_stop_timeout(synthesized: Synthesized) -> None:
    """Graviton tasks; ECS waits 120 s after SIGTERM so the relay can drain its calls."""
    task = synthesized.only("AWS::ECS::TaskDefinition")["Properties"]
    assert task["RuntimePlatform"] == {
        "CpuArchitecture": "ARM64",
        "OperatingSystemFamily": "LINUX",
    }
    assert (task["Cpu"], task["Memory"]) == ("512", "1024")
    assert task["RequiresCompatibilities"] == ["FARGATE"]
    container = _container(synthesized)
    assert container["StopTimeout"] == 120
    assert container["PortMappings"] == [{"ContainerPort": 8080, "Protocol": "tcp"}]
    drain = {e["Name"]: e["Value"] for e in container["Environment"]}["DRAIN_SECONDS"]
    assert int(drain) < container["StopTimeout"]


def test_image_is_the_relay_dockerfile_built_for_arm64(synthesized: Synthesized) -> None:
    """`cdk deploy` builds relay_container/Dockerfile for linux/arm64 (synth only stages it)."""
    assets = json.loads(
        (synthesized.outdir / f"{synthesized.stack.stack_name}.assets.json").read_text()
    )
    (image,) = assets["dockerImages"].values()
    assert image["source"]["dockerFile"] == "relay_container/Dockerfile"
    assert image["source"]["platform"] == "linux/arm64"


def test_target_group_is_sticky_with_healthz_and_a_long_deregistration_delay(
    synthesized: Synthesized, custom: Synthesized
) -> None:
    """A reconnect returns to the same task; a deploy lets calls run for 15 minutes."""
    group = synthesized.only("AWS::ElasticLoadBalancingV2::TargetGroup")
    attributes = _attributes(group, "TargetGroupAttributes")
    assert attributes["stickiness.enabled"] == "true"
    assert attributes["stickiness.type"] == "lb_cookie"
    assert attributes["stickiness.lb_cookie.duration_seconds"] == "3600"
    assert attributes["deregistration_delay.timeout_seconds"] == "900"
    assert group["Properties"]["HealthCheckPath"] == "/healthz"
    assert group["Properties"]["Matcher"] == {"HttpCode": "200"}
    assert group["Properties"]["TargetType"] == "ip"
    custom_group = custom.only("AWS::ElasticLoadBalancingV2::TargetGroup")
    assert (
        _attributes(custom_group, "TargetGroupAttributes")["deregistration_delay.timeout_seconds"]
        == "300"
    )


def test_load_balancer_idle_timeout_is_far_above_the_ping_interval(
    synthesized: Synthesized,
) -> None:
    """A quiet call is not cut by the ALB: 300 s idle against the relay's 20 s pings."""
    balancer = synthesized.only("AWS::ElasticLoadBalancingV2::LoadBalancer")
    attributes = _attributes(balancer, "LoadBalancerAttributes")
    assert int(attributes["idle_timeout.timeout_seconds"]) >= 10 * 20
    assert attributes["routing.http.drop_invalid_header_fields.enabled"] == "true"
    assert attributes["access_logs.s3.enabled"] == "true"


def test_load_balancer_admits_only_cloudfront_by_prefix_list(synthesized: Synthesized) -> None:
    """Nobody can reach the ALB directly: its only ingress is CloudFront's prefix list."""
    balancer = synthesized.only("AWS::ElasticLoadBalancingV2::LoadBalancer")
    (group_ref,) = balancer["Properties"]["SecurityGroups"]
    group_id = group_ref["Fn::GetAtt"][0]
    group = synthesized.resources[group_id]["Properties"]
    assert "SecurityGroupIngress" not in group
    ingress = [
        r["Properties"]
        for r in synthesized.of_type("AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"]["GroupId"] == {"Fn::GetAtt": [group_id, "GroupId"]}
    ]
    assert len(ingress) == 1
    (rule,) = ingress
    assert "CidrIp" not in rule
    assert "CidrIpv6" not in rule
    mapping_id = rule["SourcePrefixListId"]["Fn::FindInMap"][0]
    mapping = synthesized.template.to_json()["Mappings"][mapping_id]
    assert {r: v["PrefixList"] for r, v in mapping.items()} == CLOUDFRONT_PREFIX_LISTS
    assert rule["SourcePrefixListId"]["Fn::FindInMap"][1] == {"Ref": "AWS::Region"}


def test_listener_forwards_only_requests_with_the_origin_header(synthesized: Synthesized) -> None:
    """Without CloudFront's header the ALB answers 403; with it, the relay gets the request."""
    listener = synthesized.only("AWS::ElasticLoadBalancingV2::Listener")["Properties"]
    (default,) = listener["DefaultActions"]
    assert default["Type"] == "fixed-response"
    assert default["FixedResponseConfig"]["StatusCode"] == "403"
    rule = synthesized.only("AWS::ElasticLoadBalancingV2::ListenerRule")["Properties"]
    (condition,) = rule["Conditions"]
    assert condition["HttpHeaderConfig"]["HttpHeaderName"] == ORIGIN_HEADER
    (value,) = condition["HttpHeaderConfig"]["Values"]
    # The stack's own UUID: resolved by CloudFormation, stable across synths, never literal.
    assert value == {"Fn::Select": [2, {"Fn::Split": ["/", {"Ref": "AWS::StackId"}]}]}
    assert rule["Actions"][0]["Type"] == "forward"


def test_tasks_accept_only_the_load_balancer(synthesized: Synthesized) -> None:
    """The tasks' public IPs answer nothing: port 8080 is open to the ALB's group only."""
    service = synthesized.only("AWS::ECS::Service")["Properties"]
    network = service["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["AssignPublicIp"] == "ENABLED"
    (task_group,) = network["SecurityGroups"]
    task_group_id = task_group["Fn::GetAtt"][0]
    ingress = [
        r["Properties"]
        for r in synthesized.of_type("AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"]["GroupId"] == {"Fn::GetAtt": [task_group_id, "GroupId"]}
    ]
    assert [(r["FromPort"], r["ToPort"]) for r in ingress] == [(8080, 8080)]
    assert all("SourceSecurityGroupId" in r for r in ingress)
    assert "SecurityGroupIngress" not in synthesized.resources[task_group_id]["Properties"]


def test_vpc_has_no_nat_gateway(template: Template) -> None:
    """The idle deployment pays for no NAT gateway (~$33/month per AZ)."""
    template.resource_count_is("AWS::EC2::NatGateway", 0)
    template.has_resource_properties("AWS::EC2::FlowLog", {"TrafficType": "REJECT"})


def test_deploys_add_tasks_before_draining_and_roll_back_on_failure(
    synthesized: Synthesized,
) -> None:
    """A deploy never drops below the running capacity and undoes a release that won't start."""
    service = synthesized.only("AWS::ECS::Service")["Properties"]
    deployment = service["DeploymentConfiguration"]
    assert deployment["MinimumHealthyPercent"] == 100
    assert deployment["MaximumPercent"] == 200
    assert deployment["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
    assert service["LaunchType"] == "FARGATE"


def test_cluster_has_container_insights_unless_switched_off(
    template: Template, custom: Synthesized
) -> None:
    """Per-task CPU and memory are visible, unless -c container_insights=false saves them."""
    template.has_resource_properties(
        "AWS::ECS::Cluster",
        {
            "ClusterSettings": [
                {"Name": "containerInsights", "Value": Match.string_like_regexp("enabled|enhanced")}
            ]
        },
    )
    settings = custom.only("AWS::ECS::Cluster")["Properties"]["ClusterSettings"]
    assert settings == [{"Name": "containerInsights", "Value": "disabled"}]


def test_task_role_may_manage_task_protection_in_its_cluster(synthesized: Synthesized) -> None:
    """The relay can protect itself from scale-in while it has live calls, nothing wider."""
    task = synthesized.only("AWS::ECS::TaskDefinition")["Properties"]
    role_id = task["TaskRoleArn"]["Fn::GetAtt"][0]
    statements = [
        s
        for p in synthesized.of_type("AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    (protection,) = [s for s in statements if "ecs:UpdateTaskProtection" in s["Action"]]
    assert sorted(protection["Action"]) == ["ecs:GetTaskProtection", "ecs:UpdateTaskProtection"]
    resource = json.dumps(protection["Resource"])
    cluster_id = next(iter(synthesized.of_type("AWS::ECS::Cluster")))
    assert ":task/" in resource
    assert cluster_id in resource
    actions = {
        a
        for s in statements
        for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
    }
    assert not any(a.endswith(":*") for a in actions)


def test_scaling_tracks_active_sessions_per_task_with_cpu_as_a_guard(
    synthesized: Synthesized,
) -> None:
    """Tasks are added when calls per task pass the target, or CPU runs hot."""
    target = synthesized.only("AWS::ApplicationAutoScaling::ScalableTarget")["Properties"]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 4)
    policies = [
        p["Properties"]["TargetTrackingScalingPolicyConfiguration"]
        for p in synthesized.of_type("AWS::ApplicationAutoScaling::ScalingPolicy").values()
    ]
    (sessions,) = [p for p in policies if "CustomizedMetricSpecification" in p]
    spec = sessions["CustomizedMetricSpecification"]
    assert spec["Namespace"] == "RecallVoiceAgent/Relay"
    assert spec["MetricName"] == "ActiveSessions"
    assert spec["Statistic"] == "Average"
    assert spec["Dimensions"] == [{"Name": "Service", "Value": "RecallVoiceAgent-relay"}]
    assert sessions["TargetValue"] == 20
    (cpu,) = [p for p in policies if "PredefinedMetricSpecification" in p]
    assert cpu["PredefinedMetricSpecification"]["PredefinedMetricType"] == (
        "ECSServiceAverageCPUUtilization"
    )
    metric_names = json.dumps(policies)
    assert "RequestCount" not in metric_names
    assert "ActiveConnectionCount" not in metric_names


def test_relay_reports_metrics_under_the_dimension_scaling_watches(
    synthesized: Synthesized,
) -> None:
    """The relay's EMF Service dimension is the one the scaling policy reads."""
    environment = {e["Name"]: e["Value"] for e in _container(synthesized)["Environment"]}
    assert environment["RELAY_METRICS_NAMESPACE"] == "RecallVoiceAgent/Relay"
    assert environment["RELAY_METRICS_SERVICE"] == "RecallVoiceAgent-relay"
    assert int(environment["RELAY_MAX_SESSIONS"]) > 20  # scale out before refusing calls


def test_task_size_and_models_follow_context(custom: Synthesized) -> None:
    """`-c relay_cpu=1024 -c relay_memory_mib=2048` and allowed models reach the task."""
    task = custom.only("AWS::ECS::TaskDefinition")["Properties"]
    assert (task["Cpu"], task["Memory"]) == ("1024", "2048")
    (container,) = task["ContainerDefinitions"]
    environment = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert environment["OPENAI_REALTIME_MODEL"] == "gpt-realtime-2.1"
    assert environment["RELAY_ALLOWED_MODELS"] == "gpt-realtime-2.1,gpt-realtime-mini"
    target = custom.only("AWS::ApplicationAutoScaling::ScalableTarget")["Properties"]
    assert target["MaxCapacity"] == 6
