"""The relay on Fargate: ARM64, a private sticky ALB, deploys that finish while calls are live."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk.assertions import Match, Template

from infra.constructs.relay_origin import ELB_LOG_DELIVERY_ACCOUNTS
from infra.constructs.relay_service import VPC_CIDR
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
    assert [(m["ContainerPort"], m.get("Name")) for m in container["PortMappings"]] == [
        (8080, "public"),
        (8081, "internal"),
    ]
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


def test_target_group_is_sticky_for_the_longest_session_with_healthz(
    synthesized: Synthesized, custom: Synthesized
) -> None:
    """A reconnect returns to the same task however late in a 4 h call; /healthz gates it."""
    group = synthesized.only("AWS::ElasticLoadBalancingV2::TargetGroup")
    attributes = _attributes(group, "TargetGroupAttributes")
    environment = {e["Name"]: e["Value"] for e in _container(synthesized)["Environment"]}
    assert attributes["stickiness.enabled"] == "true"
    assert attributes["stickiness.type"] == "lb_cookie"
    assert int(attributes["stickiness.lb_cookie.duration_seconds"]) >= int(
        environment["RELAY_MAX_SESSION_SECONDS"]
    )
    assert int(environment["RELAY_MAX_SESSION_SECONDS"]) == 4 * 3600
    assert group["Properties"]["HealthCheckPath"] == "/healthz"
    assert group["Properties"]["Matcher"] == {"HttpCode": "200"}
    assert group["Properties"]["TargetType"] == "ip"
    custom_group = custom.only("AWS::ElasticLoadBalancingV2::TargetGroup")
    assert (
        _attributes(custom_group, "TargetGroupAttributes")["deregistration_delay.timeout_seconds"]
        == "600"
    )


def test_a_leaving_task_is_gone_within_the_delay_plus_the_stop_timeout(
    synthesized: Synthesized,
) -> None:
    """ECS deregisters, waits the delay (calls move), SIGTERMs, drains 90 s, kills at 120 s."""
    group = synthesized.only("AWS::ElasticLoadBalancingV2::TargetGroup")
    delay = int(_attributes(group, "TargetGroupAttributes")["deregistration_delay.timeout_seconds"])
    container = _container(synthesized)
    drain = int({e["Name"]: e["Value"] for e in container["Environment"]}["DRAIN_SECONDS"])
    assert delay == 300
    assert drain < container["StopTimeout"] <= 120
    # Health checks notice a leaving task's 503 within two 10 s intervals.
    properties = group["Properties"]
    assert properties["HealthCheckIntervalSeconds"] * properties["UnhealthyThresholdCount"] <= 30
    # Nothing else in the template may hold a deploy: no ECS deployment alarm that waits,
    # and the circuit breaker rolls back instead of retrying forever.
    deployment = synthesized.only("AWS::ECS::Service")["Properties"]["DeploymentConfiguration"]
    assert deployment.get("Alarms", {"Enable": False})["Enable"] is False
    assert deployment["DeploymentCircuitBreaker"]["Rollback"] is True


def test_load_balancer_idle_timeout_is_far_above_the_ping_interval(
    synthesized: Synthesized,
) -> None:
    """A quiet call is not cut by the ALB: 300 s idle against the relay's 20 s pings."""
    balancer = synthesized.only("AWS::ElasticLoadBalancingV2::LoadBalancer")
    attributes = _attributes(balancer, "LoadBalancerAttributes")
    assert int(attributes["idle_timeout.timeout_seconds"]) >= 10 * 20
    assert attributes["routing.http.drop_invalid_header_fields.enabled"] == "true"
    assert attributes["access_logs.s3.enabled"] == "true"


def test_load_balancer_is_internal_in_isolated_subnets(synthesized: Synthesized) -> None:
    """The ALB has no public address and no route to the internet: only CloudFront reaches it."""
    balancer = synthesized.only("AWS::ElasticLoadBalancingV2::LoadBalancer")["Properties"]
    assert balancer["Scheme"] == "internal"
    subnets = [synthesized.resources[ref["Ref"]] for ref in balancer["Subnets"]]
    assert len(subnets) == 2
    assert all(s["Properties"]["MapPublicIpOnLaunch"] is False for s in subnets)
    routes = synthesized.of_type("AWS::EC2::Route")
    subnet_ids = {ref["Ref"] for ref in balancer["Subnets"]}
    associations = [
        a["Properties"]
        for a in synthesized.of_type("AWS::EC2::SubnetRouteTableAssociation").values()
        if a["Properties"]["SubnetId"]["Ref"] in subnet_ids
    ]
    tables = {a["RouteTableId"]["Ref"] for a in associations}
    assert tables
    assert not [r for r in routes.values() if r["Properties"]["RouteTableId"]["Ref"] in tables]


def test_load_balancer_admits_the_vpc_range_only_no_prefix_list_no_header(
    synthesized: Synthesized,
) -> None:
    """No prefix-list rule, no shared-secret header: the ALB forwards what reaches it in the VPC."""
    balancer = synthesized.only("AWS::ElasticLoadBalancingV2::LoadBalancer")
    (group_ref,) = balancer["Properties"]["SecurityGroups"]
    group_id = group_ref["Fn::GetAtt"][0]
    group = synthesized.resources[group_id]["Properties"]
    (rule,) = group["SecurityGroupIngress"]
    assert rule["CidrIp"] == VPC_CIDR
    assert (rule["FromPort"], rule["ToPort"]) == (80, 80)
    assert not synthesized.of_type("AWS::EC2::PrefixList")
    assert "SourcePrefixListId" not in json.dumps(synthesized.resources)
    assert not synthesized.of_type("AWS::ElasticLoadBalancingV2::ListenerRule")
    listener = synthesized.only("AWS::ElasticLoadBalancingV2::Listener")["Properties"]
    (default,) = listener["DefaultActions"]
    assert default["Type"] == "forward"
    assert "X-Origin-Verify" not in json.dumps(synthesized.template.to_json())


def test_no_find_in_map_anywhere_so_any_region_deploys(
    synthesized: Synthesized, custom: Synthesized
) -> None:
    """No Fn::FindInMap keyed by Region: a Region missing from a table cannot fail the deploy."""
    assert "Fn::FindInMap" not in json.dumps(synthesized.template.to_json())
    # With a custom domain, CDK's CloudFront alias target looks its zone up by partition
    # (aws / aws-cn, both present): never by Region.
    lookups = _find_in_maps(custom.template.to_json())
    assert lookups
    assert all(lookup[1] == {"Ref": "AWS::Partition"} for lookup in lookups)


def _find_in_maps(node: Any) -> list[Any]:
    if isinstance(node, dict):
        found = [node["Fn::FindInMap"]] if "Fn::FindInMap" in node else []
        return found + [x for value in node.values() for x in _find_in_maps(value)]
    if isinstance(node, list):
        return [x for value in node for x in _find_in_maps(value)]
    return []


def test_access_logs_name_the_service_principal_and_the_regions_legacy_account(
    synthesized: Synthesized,
) -> None:
    """ELB may write access logs in every Region: its service principal, plus the old account."""
    policy = synthesized.only("AWS::S3::BucketPolicy")["Properties"]["PolicyDocument"]
    (statement,) = [s for s in policy["Statement"] if s["Action"] == "s3:PutObject"]
    assert statement["Principal"]["Service"] == "logdelivery.elasticloadbalancing.amazonaws.com"
    legacy = json.dumps(statement["Principal"]["AWS"])
    assert all(account in legacy for account in ELB_LOG_DELIVERY_ACCOUNTS.values())
    assert "AWS::NoValue" in legacy  # an unlisted Region keeps the service principal only


def test_tasks_accept_only_the_load_balancer(synthesized: Synthesized) -> None:
    """The tasks' public IPs answer nothing: port 8080 is open to the ALB's group only, the
    internal port to the tasks' own group only."""
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
    by_port = {(r["FromPort"], r["ToPort"]): r["SourceSecurityGroupId"] for r in ingress}
    assert set(by_port) == {(8080, 8080), (8081, 8081)}
    own_group = {"Fn::GetAtt": [task_group_id, "GroupId"]}
    assert by_port[(8081, 8081)] == own_group
    assert by_port[(8080, 8080)] != own_group  # the load balancer's
    assert "SecurityGroupIngress" not in synthesized.resources[task_group_id]["Properties"]


def test_tasks_may_only_open_https_connections(synthesized: Synthesized) -> None:
    """A compromised relay cannot reach anything but TCP 443 (OpenAI, AWS APIs) and the
    other relay tasks' internal port."""
    service = synthesized.only("AWS::ECS::Service")["Properties"]
    (task_group,) = service["NetworkConfiguration"]["AwsvpcConfiguration"]["SecurityGroups"]
    group = synthesized.resources[task_group["Fn::GetAtt"][0]]["Properties"]
    rules = [
        {k: v for k, v in rule.items() if k != "Description"}
        for rule in group["SecurityGroupEgress"]
    ]
    assert rules == [{"CidrIp": "0.0.0.0/0", "FromPort": 443, "IpProtocol": "tcp", "ToPort": 443}]
    standalone = [
        {k: v for k, v in r["Properties"].items() if k != "Description"}
        for r in synthesized.of_type("AWS::EC2::SecurityGroupEgress").values()
        if r["Properties"]["GroupId"] == {"Fn::GetAtt": [task_group["Fn::GetAtt"][0], "GroupId"]}
    ]
    own_group = {"Fn::GetAtt": [task_group["Fn::GetAtt"][0], "GroupId"]}
    assert standalone == [
        {
            "GroupId": own_group,
            "DestinationSecurityGroupId": own_group,
            "FromPort": 8081,
            "IpProtocol": "tcp",
            "ToPort": 8081,
        }
    ]


def test_the_internal_port_is_not_behind_the_load_balancer(synthesized: Synthesized) -> None:
    """Only the public port is a load balancer target; the internal port has no listener or
    target group, so nothing outside the tasks' own group can reach it."""
    service = synthesized.only("AWS::ECS::Service")["Properties"]
    assert [(lb["ContainerName"], lb["ContainerPort"]) for lb in service["LoadBalancers"]] == [
        ("relay", 8080)
    ]
    groups = synthesized.of_type("AWS::ElasticLoadBalancingV2::TargetGroup").values()
    assert [g["Properties"]["Port"] for g in groups] == [8080]
    listeners = synthesized.of_type("AWS::ElasticLoadBalancingV2::Listener").values()
    assert all(listener["Properties"]["Port"] != 8081 for listener in listeners)
    environment = {e["Name"]: e["Value"] for e in _container(synthesized)["Environment"]}
    assert environment["RELAY_INTERNAL_PORT"] == "8081"


def test_service_has_no_desired_count_beside_autoscaling(synthesized: Synthesized) -> None:
    """An update never resets the running count: autoscaling alone owns it."""
    service = synthesized.only("AWS::ECS::Service")["Properties"]
    assert "DesiredCount" not in service
    target = synthesized.only("AWS::ApplicationAutoScaling::ScalableTarget")["Properties"]
    assert target["MinCapacity"] >= 1


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
    """Per-task CPU and memory are visible, unless -c relay_container_insights=false saves them."""
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


def test_task_role_may_protect_and_describe_only_its_cluster(synthesized: Synthesized) -> None:
    """The relay protects itself (bounded) and asks ECS whether it is leaving; nothing wider."""
    task = synthesized.only("AWS::ECS::TaskDefinition")["Properties"]
    role_id = task["TaskRoleArn"]["Fn::GetAtt"][0]
    statements = [
        s
        for p in synthesized.of_type("AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    cluster_id = next(iter(synthesized.of_type("AWS::ECS::Cluster")))

    def actions(statement: dict[str, Any]) -> list[str]:
        action = statement["Action"]
        return sorted(action if isinstance(action, list) else [action])

    (on_tasks,) = [s for s in statements if "ecs:UpdateTaskProtection" in actions(s)]
    assert actions(on_tasks) == [
        "ecs:DescribeTasks",
        "ecs:GetTaskProtection",
        "ecs:UpdateTaskProtection",
    ]
    assert ":task/" in json.dumps(on_tasks["Resource"])
    assert cluster_id in json.dumps(on_tasks["Resource"])
    (on_service,) = [s for s in statements if "ecs:DescribeServices" in actions(s)]
    assert actions(on_service) == ["ecs:DescribeServices"]
    assert ":service/" in json.dumps(on_service["Resource"])
    assert cluster_id in json.dumps(on_service["Resource"])
    everything = {a for s in statements for a in actions(s)}
    assert not any(a.endswith(":*") for a in everything)
    assert not [s for s in statements if s.get("Resource") == "*"]


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


def test_task_size_architecture_and_models_follow_context(custom: Synthesized) -> None:
    """`-c relay_cpu=1024 -c relay_architecture=x86_64` and allowed models reach the task."""
    task = custom.only("AWS::ECS::TaskDefinition")["Properties"]
    assert (task["Cpu"], task["Memory"]) == ("1024", "2048")
    assert task["RuntimePlatform"]["CpuArchitecture"] == "X86_64"
    assets = json.loads((custom.outdir / f"{custom.stack.stack_name}.assets.json").read_text())
    (image,) = assets["dockerImages"].values()
    assert image["source"]["platform"] == "linux/amd64"
    (container,) = task["ContainerDefinitions"]
    environment = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert environment["OPENAI_REALTIME_MODEL"] == "gpt-realtime-2.1"
    assert environment["RELAY_ALLOWED_MODELS"] == "gpt-realtime-2.1,gpt-realtime-mini"
    target = custom.only("AWS::ApplicationAutoScaling::ScalableTarget")["Properties"]
    assert target["MaxCapacity"] == 6
