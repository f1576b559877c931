"""RelayService: the relay on Fargate behind a private, sticky Application Load Balancer.

Network and cost. A VPC over two AZs with **no NAT gateway** and two subnet groups: public
subnets for the tasks (a public IPv4 address each, ~$3.65/month, so they reach OpenAI, ECR,
Secrets Manager, CloudWatch and DynamoDB directly; their security group admits only the
load balancer on the container port and the other tasks on the internal port, and lets out
only TCP 443 and the internal port to the other tasks), and isolated subnets for
the **internal** load balancer, which has no public address at all. CloudFront reaches it
through a VPC origin (``infra/constructs/edge.py``), so the origin leg never crosses the
internet and no prefix list or shared-secret header is needed: the ALB's security group
admits the VPC's own range only (CloudFront's service-managed interfaces live in these
subnets; nothing else in the VPC listens or may connect on that port but the tasks, whose
egress is 443 to the internet). Private subnets with a NAT gateway would cost ~$33/month per
AZ plus $0.045/GB for the relay's audio to OpenAI, for no gain in exposure. Rejected flows
are logged (VPC flow logs, REJECT only).

Load balancer. Idle timeout well above the relay's 20 s pings. With a custom domain
(:class:`OriginTls`) the listener is HTTPS on 443 with a certificate of the stack's region
naming ``origin.<domain>`` and the domain itself (CloudFront checks the certificate against
the forwarded Host header), so the CloudFront→ALB leg is TLS as well; without one it is
HTTP on 80 inside the VPC. Target group: **sticky** for as long as a session may last
(a reconnecting page returns to the task that holds its session), health check
``/healthz`` (503 once the relay is leaving, so the ALB stops routing new calls to it).

Deploys and scale-in finish on time while calls are live (docs/aws.md, "Deploys"):

- minimum healthy 100 %: a deploy starts new tasks before stopping old ones; the circuit
  breaker rolls back a release whose tasks do not become healthy; no ``DesiredCount`` in
  the template, so an update never resets the count autoscaling chose;
- ECS deregisters a leaving task at once (the ALB sends it no new connection), waits up to
  the **deregistration delay** (context, default 300 s) for its WebSockets to close (the
  relay hands its calls over to other tasks), then sends SIGTERM: the relay closes what
  is left with 1001 within ``DRAIN_SECONDS``, inside the **120 s stop timeout**;
- task **scale-in protection** is bounded (``relay/protection.py``: minutes, never
  renewed), so neither a deployment nor CloudFormation waits on it for long;
- the task role may describe its own task and service (``relay/leaving.py``), so the relay
  can learn that ECS is stopping or superseding it before SIGTERM, and leave at once.

Scaling: target tracking on the relay's own EMF metric ``ActiveSessions`` (Average over
the tasks' samples = sessions per task), with CPU as a second guard. ALB request count
and active connections are per load balancer and pooled behind CloudFront: useless here.

The image is built from the repository root with ``relay_container/Dockerfile`` and an
allow-list ``.dockerignore``, for ``arm64`` (Graviton, the default) or ``x86_64``
(``-c relay_architecture=x86_64``: no emulation needed on an x86 build host).
``cdk synth`` only stages that context; Docker (or Finch/Podman via ``CDK_DOCKER``) builds
it at ``cdk deploy`` (``python -m infra.preflight`` checks the host can).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from aws_cdk import Duration, IgnoreMode, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.constructs.relay_environment import METRICS_NAMESPACE, container_environment
from infra.constructs.relay_origin import OriginTls, log_access, origin_certificate
from infra.settings import CONTAINER_PORT, RelaySettings

HEALTH_CHECK_PATH: Final = "/healthz"
STOP_TIMEOUT_SECONDS: Final = 120
DOCKERFILE: Final = "relay_container/Dockerfile"
ACTIVE_SESSIONS_METRIC: Final = "ActiveSessions"
CPU_TARGET_PERCENT: Final = 70
#: The only port the tasks may open connections to (OpenAI, AWS APIs, Recall: all HTTPS).
#: DNS to the VPC resolver and the ECS agent endpoint are not filtered by security groups.
EGRESS_PORT: Final = 443
#: The VPC's range, a literal so the ALB's ingress rule is one a reviewer (and cdk-nag) can read.
VPC_CIDR: Final = "10.0.0.0/16"

#: Fargate CPU architecture and the image platform built for it.
PLATFORMS: Final = {
    "arm64": (ecs.CpuArchitecture.ARM64, ecr_assets.Platform.LINUX_ARM64),
    "x86_64": (ecs.CpuArchitecture.X86_64, ecr_assets.Platform.LINUX_AMD64),
}


class RelayService(Construct):
    """VPC, cluster, task, service, internal ALB and scaling of the relay.

    Exposes ``vpc``, ``cluster``, ``task_definition``, ``container``, ``service``,
    ``load_balancer``, ``listener``, ``target_group``, ``scaling``, ``log_group``,
    ``settings`` and ``metrics_service`` (the EMF ``Service`` dimension).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: RelaySettings,
        project_root: Path,
        openai_api_key: secretsmanager.ISecret,
        relay_token_secret: secretsmanager.ISecret,
        recall_api_key: secretsmanager.ISecret,
        tool_signing_secret: secretsmanager.ISecret,
        recall_region: str,
        recall_webhook_secret: secretsmanager.ISecret | None = None,
        table_name: str,
        metrics_service: str,
        log_retention: logs.RetentionDays,
        availability_zones: tuple[str, ...] = (),
        origin_tls: OriginTls | None = None,
    ) -> None:
        """Build the relay from ``settings``.

        With ``origin_tls`` the listener is HTTPS on 443 under that name (CloudFront then
        connects over TLS); without it, HTTP on 80, reachable only inside the VPC.
        """
        super().__init__(scope, construct_id)
        self.settings = settings
        self.metrics_service = metrics_service
        self.origin_tls = origin_tls
        self.vpc = self._build_vpc(log_retention, availability_zones)
        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            vpc=self.vpc,
            container_insights_v2=(
                ecs.ContainerInsights.ENABLED
                if settings.container_insights
                else ecs.ContainerInsights.DISABLED
            ),
        )
        self.log_group = logs.LogGroup(
            self, "Logs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        cpu_architecture, platform = PLATFORMS[settings.architecture]
        self.task_definition = ecs.FargateTaskDefinition(
            self,
            "Task",
            cpu=settings.cpu,
            memory_limit_mib=settings.memory_mib,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=cpu_architecture,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        self.container = self.task_definition.add_container(
            "relay",
            image=ecs.ContainerImage.from_asset(
                str(project_root),
                file=DOCKERFILE,
                platform=platform,
                ignore_mode=IgnoreMode.DOCKER,  # the allow-list .dockerignore at the root
            ),
            # The public port first (the target group's); the internal one is for the
            # other tasks only (meeting events forwarded to a session's task).
            port_mappings=[
                ecs.PortMapping(container_port=CONTAINER_PORT, name="public"),
                ecs.PortMapping(container_port=settings.internal_port, name="internal"),
            ],
            stop_timeout=Duration.seconds(STOP_TIMEOUT_SECONDS),
            logging=ecs.LogDrivers.aws_logs(stream_prefix="relay", log_group=self.log_group),
            environment=container_environment(
                settings,
                table_name=table_name,
                metrics_service=metrics_service,
                recall_region=recall_region,
            ),
            secrets={
                "OPENAI_API_KEY": ecs.Secret.from_secrets_manager(openai_api_key),
                "RELAY_TOKEN_SECRET": ecs.Secret.from_secrets_manager(relay_token_secret),
                "RECALL_API_KEY": ecs.Secret.from_secrets_manager(recall_api_key),
                "RELAY_TOOL_SIGNING_SECRET": ecs.Secret.from_secrets_manager(tool_signing_secret),
                # Recall's workspace verification secret signs the real-time events
                # websocket's upgrade (/recall/events/) as it signs the webhooks.
                **(
                    {
                        "RECALL_WEBHOOK_SECRET": ecs.Secret.from_secrets_manager(
                            recall_webhook_secret
                        )
                    }
                    if recall_webhook_secret is not None
                    else {}
                ),
            },
        )
        self._grant_task_protection()
        self.load_balancer, self.listener, self.target_group = self._build_load_balancer()
        self.service = self._build_service()
        self.target_group.add_target(
            self.service.load_balancer_target(
                container_name=self.container.container_name, container_port=CONTAINER_PORT
            )
        )
        self.scaling = self._build_scaling()

    # Private

    def _build_vpc(
        self, log_retention: logs.RetentionDays, availability_zones: tuple[str, ...]
    ) -> ec2.Vpc:
        flow_logs = logs.LogGroup(
            self, "FlowLogs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        return ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(VPC_CIDR),
            max_azs=None if availability_zones else 2,
            availability_zones=list(availability_zones) or None,
            nat_gateways=0,
            subnet_configuration=[
                # Tasks: a public address each for their own egress (no NAT gateway).
                ec2.SubnetConfiguration(name="tasks", subnet_type=ec2.SubnetType.PUBLIC),
                # The internal load balancer and CloudFront's VPC-origin interfaces.
                ec2.SubnetConfiguration(
                    name="origin", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24
                ),
            ],
            flow_logs={
                "Rejected": ec2.FlowLogOptions(
                    traffic_type=ec2.FlowLogTrafficType.REJECT,
                    destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
                )
            },
        )

    def _grant_task_protection(self) -> None:
        # The ECS agent endpoint ($ECS_AGENT_URI/task-protection/v1/state) acts with the
        # task role; the leave watcher (relay/leaving.py) describes its own task and its
        # service. Only this cluster's tasks and services: a task's own id, and the
        # service's name (the service depends on this role), are known at run time.
        stack = Stack.of(self)
        tasks = stack.format_arn(
            service="ecs", resource="task", resource_name=f"{self.cluster.cluster_name}/*"
        )
        services = stack.format_arn(
            service="ecs", resource="service", resource_name=f"{self.cluster.cluster_name}/*"
        )
        self.task_definition.add_to_task_role_policy(
            iam.PolicyStatement(
                actions=["ecs:GetTaskProtection", "ecs:UpdateTaskProtection", "ecs:DescribeTasks"],
                resources=[tasks],
            )
        )
        self.task_definition.add_to_task_role_policy(
            iam.PolicyStatement(actions=["ecs:DescribeServices"], resources=[services])
        )

    def _build_load_balancer(
        self,
    ) -> tuple[
        elbv2.ApplicationLoadBalancer, elbv2.ApplicationListener, elbv2.ApplicationTargetGroup
    ]:
        settings = self.settings
        security_group = ec2.SecurityGroup(
            self,
            "LoadBalancerSecurityGroup",
            vpc=self.vpc,
            description="Relay ALB (internal): CloudFront VPC origin interfaces in this VPC",
            allow_all_outbound=False,  # egress to the tasks is added with the target
        )
        port = 443 if self.origin_tls else 80
        security_group.add_ingress_rule(
            ec2.Peer.ipv4(VPC_CIDR),
            ec2.Port.tcp(port),
            "CloudFront VPC origin (its interfaces take addresses in this VPC)",
        )
        load_balancer = elbv2.ApplicationLoadBalancer(
            self,
            "LoadBalancer",
            vpc=self.vpc,
            internet_facing=False,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            security_group=security_group,
            idle_timeout=Duration.seconds(settings.idle_timeout_seconds),
            drop_invalid_header_fields=True,
        )
        log_access(self, load_balancer)
        target_group = elbv2.ApplicationTargetGroup(
            self,
            "Targets",
            vpc=self.vpc,
            port=CONTAINER_PORT,
            protocol=elbv2.ApplicationProtocol.HTTP,
            target_type=elbv2.TargetType.IP,
            deregistration_delay=Duration.seconds(settings.deregistration_delay_seconds),
            stickiness_cookie_duration=Duration.seconds(settings.stickiness_seconds),
            health_check=elbv2.HealthCheck(
                path=HEALTH_CHECK_PATH,
                healthy_http_codes="200",
                interval=Duration.seconds(10),
                timeout=Duration.seconds(5),
                healthy_threshold_count=2,
                unhealthy_threshold_count=2,
            ),
        )
        listener = load_balancer.add_listener(
            "Https" if self.origin_tls else "Http",
            port=port,
            protocol=(
                elbv2.ApplicationProtocol.HTTPS
                if self.origin_tls
                else elbv2.ApplicationProtocol.HTTP
            ),
            certificates=(
                [origin_certificate(self, load_balancer, self.origin_tls)]
                if self.origin_tls
                else None
            ),
            ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS if self.origin_tls else None,
            open=False,  # ingress is the VPC-range rule above, not 0.0.0.0/0
            default_action=elbv2.ListenerAction.forward([target_group]),
        )
        return load_balancer, listener, target_group

    def _build_service(self) -> ecs.FargateService:
        security_group = ec2.SecurityGroup(
            self,
            "TaskSecurityGroup",
            vpc=self.vpc,
            description=(
                "Relay tasks: the container port from the load balancer; the internal port "
                "from each other; HTTPS out"
            ),
            allow_all_outbound=False,
        )
        # Meeting events land on any task and are forwarded to the one holding the session
        # (relay/meeting_router.py): the tasks reach each other on the internal port, and
        # nothing else does (the load balancer has no listener or target on it).
        internal = ec2.Port.tcp(self.settings.internal_port)
        security_group.add_ingress_rule(
            security_group, internal, "Internal port: meeting events from the other relay tasks"
        )
        security_group.add_egress_rule(
            security_group, internal, "Internal port: meeting events to the other relay tasks"
        )
        security_group.add_egress_rule(
            ec2.Peer.any_ipv4(),
            ec2.Port.tcp(EGRESS_PORT),
            "HTTPS: OpenAI Realtime, ECR, Secrets Manager, CloudWatch, DynamoDB, ECS",
        )
        return ecs.FargateService(
            self,
            "Service",
            cluster=self.cluster,
            task_definition=self.task_definition,
            # No desired count: autoscaling owns it, and a template update must not reset
            # it (CloudFormation starts a new service at 1; min capacity raises it).
            desired_count=None,
            assign_public_ip=True,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            security_groups=[security_group],
            min_healthy_percent=100,
            max_healthy_percent=200,
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            health_check_grace_period=Duration.seconds(60),
        )

    def _build_scaling(self) -> ecs.ScalableTaskCount:
        settings = self.settings
        scaling = self.service.auto_scale_task_count(
            min_capacity=settings.min_count, max_capacity=settings.max_count
        )
        scaling.scale_to_track_custom_metric(
            "ActiveSessionsPerTask",
            metric=self.active_sessions_metric("Average"),
            target_value=settings.sessions_per_task_target,
            scale_out_cooldown=Duration.seconds(60),
            scale_in_cooldown=Duration.seconds(300),
        )
        scaling.scale_on_cpu_utilization(
            "Cpu",
            target_utilization_percent=CPU_TARGET_PERCENT,
            scale_out_cooldown=Duration.seconds(60),
            scale_in_cooldown=Duration.seconds(300),
        )
        return scaling

    def active_sessions_metric(self, statistic: str) -> cloudwatch.Metric:
        """The relay's ActiveSessions gauge: ``Average`` is per task, ``Sum`` is the total."""
        return self.relay_metric(ACTIVE_SESSIONS_METRIC, statistic)

    def relay_metric(self, name: str, statistic: str) -> cloudwatch.Metric:
        """One of the relay's EMF metrics, with this deployment's ``Service`` dimension."""
        return cloudwatch.Metric(
            namespace=METRICS_NAMESPACE,
            metric_name=name,
            dimensions_map={"Service": self.metrics_service},
            statistic=statistic,
            period=Duration.minutes(1),
        )
