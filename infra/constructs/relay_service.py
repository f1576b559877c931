"""RelayService: the relay on Fargate (ARM64) behind a sticky Application Load Balancer.

Network and cost. A VPC over two AZs with **public subnets only and no NAT gateway**:
tasks get a public IPv4 address (~$3.65/month each) and reach OpenAI, ECR, Secrets
Manager, CloudWatch and DynamoDB directly, while their security group admits only the
load balancer on the container port. The alternative, private subnets, still needs a NAT
gateway (~$33/month per AZ plus $0.045/GB) because the relay must reach api.openai.com,
plus interface endpoints (~$7/month per AZ each) for ECR, Logs and Secrets Manager; at
this size that triples the idle cost for no gain in exposure. Rejected flows are logged
(VPC flow logs, REJECT only: the record volume of accepted audio flows would cost more
than it tells).

Load balancer. Internet-facing, but its security group admits only CloudFront's
origin-facing managed prefix list (by a region ``CfnMapping``, so synth needs no AWS
lookup; that list counts ~55 entries against the SG rule quota, hence one rule), and its
listener forwards only requests carrying the origin header that CloudFront adds
(:attr:`origin_header_value`); anything else gets 403. Idle timeout well above the
relay's 20 s pings. With a custom domain (:class:`OriginTls`) the listener is HTTPS on
443 under ``origin.<domain>`` with a certificate of the stack's region, so the
CloudFront→ALB leg is encrypted as well; without one it is HTTP on 80 (no certificate can
name ``*.elb.amazonaws.com``). Target group: **sticky** (load-balancer cookie, so a reconnecting
page returns to the task that holds its session), health check ``/healthz`` (503 once
draining, so the ALB stops routing new calls to a draining task).

Deploys and scale-in never cut a call short on purpose:

- minimum healthy 100 %: a deploy starts new tasks before draining old ones; the
  deployment circuit breaker rolls back a release whose tasks do not become healthy;
- **deregistration delay** (context, default 900 s): how long the ALB keeps an old task's
  open WebSockets before ECS stops it. Longer lets more calls end on their own, but a
  deploy (and a scale-in) waits up to that long whenever calls are open; 0 makes deploys
  fast and drops calls. Then ECS sends SIGTERM: the relay drains for ``DRAIN_SECONDS``
  and closes the rest with 1001, within the **120 s stop timeout** (set on our own task
  definition, which the ECS patterns do not expose);
- task **scale-in protection**: the task role may get and update the protection of tasks
  in this cluster (a task's own ARN is known only at run time); the relay holds it while
  it has live sessions, so scale-in picks idle tasks.

Scaling: target tracking on the relay's own EMF metric ``ActiveSessions`` (Average over
the tasks' samples = sessions per task), with CPU as a second guard. ALB request count
and active connections are per load balancer and pooled behind CloudFront: useless here.
EMF lines reach CloudWatch through the ``awslogs`` driver (CloudWatch Logs extracts EMF
from any log group in the regions where EMF auto-detection has launched).

The image is built from the repository root with ``relay_container/Dockerfile`` and an
allow-list ``.dockerignore`` (``pyproject.toml``, ``relay_container/relay``, ``storage``).
``cdk synth`` only stages that context; Docker (or Finch/Podman via ``CDK_DOCKER``) builds
it at ``cdk deploy``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from aws_cdk import Aws, CfnMapping, Duration, Fn, IgnoreMode, RemovalPolicy, Stack
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_route53_targets as route53_targets
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

CONTAINER_PORT: Final = 8080
HEALTH_CHECK_PATH: Final = "/healthz"
STOP_TIMEOUT_SECONDS: Final = 120
DOCKERFILE: Final = "relay_container/Dockerfile"
#: Header CloudFront adds to every origin request; the listener forwards only with it.
ORIGIN_HEADER: Final = "X-Origin-Verify"
METRICS_NAMESPACE: Final = "RecallVoiceAgent/Relay"
ACTIVE_SESSIONS_METRIC: Final = "ActiveSessions"
CPU_TARGET_PERCENT: Final = 70

#: CloudFront's origin-facing managed prefix list (com.amazonaws.global.cloudfront.origin-
#: facing) per region, as published by AWS. A region missing here fails the deploy at the
#: mapping lookup; pass ``-c cloudfront_prefix_list_id=pl-...`` for it.
CLOUDFRONT_PREFIX_LISTS: Final = {
    "ap-northeast-1": "pl-58a04531",
    "ap-northeast-2": "pl-22a6434b",
    "ap-northeast-3": "pl-31a14458",
    "ap-south-1": "pl-9aa247f3",
    "ap-southeast-1": "pl-31a34658",
    "ap-southeast-2": "pl-b8a742d1",
    "ca-central-1": "pl-38a64351",
    "eu-central-1": "pl-a3a144ca",
    "eu-north-1": "pl-fab65393",
    "eu-west-1": "pl-4fa04526",
    "eu-west-2": "pl-93a247fa",
    "eu-west-3": "pl-75b1541c",
    "sa-east-1": "pl-5da64334",
    "us-east-1": "pl-3b927c52",
    "us-east-2": "pl-b6a144df",
    "us-west-1": "pl-4ea04527",
    "us-west-2": "pl-82a045eb",
}


#: Account through which Elastic Load Balancing writes access logs, per region (AWS docs,
#: "Enable access logs for your Application Load Balancer"), for the same regions.
ELB_LOG_DELIVERY_ACCOUNTS: Final = {
    "ap-northeast-1": "582318560864",
    "ap-northeast-2": "600734575887",
    "ap-northeast-3": "383597477331",
    "ap-south-1": "718504428378",
    "ap-southeast-1": "114774131450",
    "ap-southeast-2": "783225319266",
    "ca-central-1": "985666609251",
    "eu-central-1": "054676820928",
    "eu-north-1": "897822967062",
    "eu-west-1": "156460612806",
    "eu-west-2": "652711504416",
    "eu-west-3": "009996457667",
    "sa-east-1": "507241528517",
    "us-east-1": "127311923021",
    "us-east-2": "033677994240",
    "us-west-1": "027434742980",
    "us-west-2": "797873946194",
}
ACCESS_LOG_PREFIX: Final = "alb"


@dataclass(frozen=True, slots=True)
class OriginTls:
    """A DNS name of the user's own for the load balancer, so CloudFront reaches it over TLS.

    Only possible with a custom domain: no certificate can name ``*.elb.amazonaws.com``.
    The certificate is requested in the stack's region and DNS-validated in the zone.
    """

    domain_name: str
    hosted_zone_id: str
    hosted_zone_name: str


class RelayService(Construct):
    """VPC, cluster, task, service, ALB and scaling of the relay.

    Exposes ``vpc``, ``cluster``, ``task_definition``, ``container``, ``service``,
    ``load_balancer``, ``listener``, ``target_group``, ``scaling``, ``log_group``,
    ``metrics_service`` (the EMF ``Service`` dimension) and :attr:`origin_header_value`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        project_root: Path,
        openai_api_key: secretsmanager.ISecret,
        relay_token_secret: secretsmanager.ISecret,
        table_name: str,
        metrics_service: str,
        log_retention: logs.RetentionDays,
        cpu: int,
        memory_mib: int,
        desired_count: int,
        min_count: int,
        max_count: int,
        sessions_per_task_target: int,
        max_sessions_per_task: int,
        max_sessions_per_subject: int,
        max_session_seconds: int,
        drain_seconds: int,
        deregistration_delay_seconds: int,
        idle_timeout_seconds: int,
        stickiness_seconds: int,
        models: tuple[str, ...],
        log_level: str,
        cloudfront_prefix_list_id: str | None,
        origin_tls: OriginTls | None = None,
        container_insights: bool = True,
    ) -> None:
        """Build the relay; ``models[0]`` is the default model, the rest may be picked.

        With ``origin_tls`` the listener is HTTPS on 443 under that name (CloudFront then
        connects over TLS); without it, HTTP on 80 under the ALB's own DNS name.
        """
        super().__init__(scope, construct_id)
        self.metrics_service = metrics_service
        self.origin_tls = origin_tls
        self.vpc = self._build_vpc(log_retention)
        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            vpc=self.vpc,
            container_insights_v2=(
                ecs.ContainerInsights.ENABLED
                if container_insights
                else ecs.ContainerInsights.DISABLED
            ),
        )
        self.log_group = logs.LogGroup(
            self, "Logs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        self.task_definition = ecs.FargateTaskDefinition(
            self,
            "Task",
            cpu=cpu,
            memory_limit_mib=memory_mib,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.ARM64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        self.container = self.task_definition.add_container(
            "relay",
            image=ecs.ContainerImage.from_asset(
                str(project_root),
                file=DOCKERFILE,
                platform=ecr_assets.Platform.LINUX_ARM64,
                ignore_mode=IgnoreMode.DOCKER,  # the allow-list .dockerignore at the root
            ),
            port_mappings=[ecs.PortMapping(container_port=CONTAINER_PORT)],
            stop_timeout=Duration.seconds(STOP_TIMEOUT_SECONDS),
            logging=ecs.LogDrivers.aws_logs(stream_prefix="relay", log_group=self.log_group),
            environment={
                "PORT": str(CONTAINER_PORT),
                "OPENAI_REALTIME_MODEL": models[0],
                "RELAY_ALLOWED_MODELS": ",".join(models),
                "RELAY_MAX_SESSIONS": str(max_sessions_per_task),
                "RELAY_MAX_SESSIONS_PER_SUBJECT": str(max_sessions_per_subject),
                "RELAY_MAX_SESSION_SECONDS": str(max_session_seconds),
                "DRAIN_SECONDS": str(drain_seconds),
                "TABLE_NAME": table_name,
                "RELAY_METRICS_NAMESPACE": METRICS_NAMESPACE,
                "RELAY_METRICS_SERVICE": metrics_service,
                "LOG_LEVEL": log_level,
            },
            secrets={
                "OPENAI_API_KEY": ecs.Secret.from_secrets_manager(openai_api_key),
                "RELAY_TOKEN_SECRET": ecs.Secret.from_secrets_manager(relay_token_secret),
            },
        )
        self._grant_task_protection()
        self.load_balancer, self.listener, self.target_group = self._build_load_balancer(
            idle_timeout_seconds=idle_timeout_seconds,
            deregistration_delay_seconds=deregistration_delay_seconds,
            stickiness_seconds=stickiness_seconds,
            prefix_list_id=cloudfront_prefix_list_id,
        )
        self.service = self._build_service(desired_count)
        self.target_group.add_target(self.service)
        self.scaling = self._build_scaling(
            min_count=min_count, max_count=max_count, sessions_target=sessions_per_task_target
        )

    @property
    def origin_header_value(self) -> str:
        """The origin header's value: this stack's own UUID (from its stack id).

        Stable across synths and updates, unique per deployed stack, unknown outside the
        account, and never written into the template (a token resolved by CloudFormation).
        """
        return Fn.select(2, Fn.split("/", Aws.STACK_ID))

    # Private

    def _build_vpc(self, log_retention: logs.RetentionDays) -> ec2.Vpc:
        flow_logs = logs.LogGroup(
            self, "FlowLogs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        return ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC)
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
        # task role. Only tasks of this cluster; the task's own id is known at run time.
        self.task_definition.add_to_task_role_policy(
            iam.PolicyStatement(
                actions=["ecs:GetTaskProtection", "ecs:UpdateTaskProtection"],
                resources=[
                    Stack.of(self).format_arn(
                        service="ecs",
                        resource="task",
                        resource_name=f"{self.cluster.cluster_name}/*",
                    )
                ],
            )
        )

    def _build_load_balancer(
        self,
        *,
        idle_timeout_seconds: int,
        deregistration_delay_seconds: int,
        stickiness_seconds: int,
        prefix_list_id: str | None,
    ) -> tuple[
        elbv2.ApplicationLoadBalancer, elbv2.ApplicationListener, elbv2.ApplicationTargetGroup
    ]:
        security_group = ec2.SecurityGroup(
            self,
            "LoadBalancerSecurityGroup",
            vpc=self.vpc,
            description="Relay ALB: HTTP from CloudFront origin-facing addresses only",
            allow_all_outbound=False,  # egress to the tasks is added with the target
        )
        if prefix_list_id is None:
            mapping = CfnMapping(
                self,
                "CloudFrontOriginFacing",
                mapping={r: {"PrefixList": pl} for r, pl in CLOUDFRONT_PREFIX_LISTS.items()},
            )
            prefix_list_id = mapping.find_in_map(Aws.REGION, "PrefixList")
        port = 443 if self.origin_tls else 80
        security_group.add_ingress_rule(
            ec2.Peer.prefix_list(prefix_list_id),
            ec2.Port.tcp(port),
            "CloudFront origin-facing prefix list",
        )
        load_balancer = elbv2.ApplicationLoadBalancer(
            self,
            "LoadBalancer",
            vpc=self.vpc,
            internet_facing=True,
            security_group=security_group,
            idle_timeout=Duration.seconds(idle_timeout_seconds),
            drop_invalid_header_fields=True,
        )
        self._log_access(load_balancer)
        target_group = elbv2.ApplicationTargetGroup(
            self,
            "Targets",
            vpc=self.vpc,
            port=CONTAINER_PORT,
            protocol=elbv2.ApplicationProtocol.HTTP,
            target_type=elbv2.TargetType.IP,
            deregistration_delay=Duration.seconds(deregistration_delay_seconds),
            stickiness_cookie_duration=Duration.seconds(stickiness_seconds),
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
            certificates=[self._origin_certificate(load_balancer)] if self.origin_tls else None,
            ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS if self.origin_tls else None,
            open=False,  # ingress is the prefix-list rule above, not 0.0.0.0/0
            default_action=elbv2.ListenerAction.fixed_response(
                403, content_type="text/plain", message_body="Forbidden"
            ),
        )
        listener.add_action(
            "FromCloudFront",
            priority=1,
            conditions=[
                elbv2.ListenerCondition.http_header(ORIGIN_HEADER, [self.origin_header_value])
            ],
            action=elbv2.ListenerAction.forward([target_group]),
        )
        return load_balancer, listener, target_group

    def _origin_certificate(
        self, load_balancer: elbv2.ApplicationLoadBalancer
    ) -> elbv2.IListenerCertificate:
        assert self.origin_tls is not None
        zone = route53.HostedZone.from_hosted_zone_attributes(
            self,
            "OriginZone",
            hosted_zone_id=self.origin_tls.hosted_zone_id,
            zone_name=self.origin_tls.hosted_zone_name,
        )
        route53.ARecord(
            self,
            "OriginAlias",
            zone=zone,
            record_name=self.origin_tls.domain_name,
            target=route53.RecordTarget.from_alias(
                route53_targets.LoadBalancerTarget(load_balancer)
            ),
        )
        certificate = acm.Certificate(
            self,
            "OriginCertificate",
            domain_name=self.origin_tls.domain_name,
            validation=acm.CertificateValidation.from_dns(zone),
        )
        return elbv2.ListenerCertificate.from_certificate_manager(certificate)

    def _log_access(self, load_balancer: elbv2.ApplicationLoadBalancer) -> None:
        # `log_access_logs()` needs a concrete region at synth; this stack is
        # environment-agnostic, so the attributes and the bucket policy are written here,
        # with the regional ELB log-delivery account from a mapping (and the service
        # principal that newer regions use).
        bucket = self._access_log_bucket()
        accounts = CfnMapping(
            self,
            "ElbLogDelivery",
            mapping={r: {"Account": a} for r, a in ELB_LOG_DELIVERY_ACCOUNTS.items()},
        )
        objects = bucket.arn_for_objects(f"{ACCESS_LOG_PREFIX}/AWSLogs/{Aws.ACCOUNT_ID}/*")
        bucket.add_to_resource_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject"],
                principals=[
                    iam.AccountPrincipal(accounts.find_in_map(Aws.REGION, "Account")),
                    iam.ServicePrincipal("logdelivery.elasticloadbalancing.amazonaws.com"),
                ],
                resources=[objects],
            )
        )
        load_balancer.set_attribute("access_logs.s3.enabled", "true")
        load_balancer.set_attribute("access_logs.s3.bucket", bucket.bucket_name)
        load_balancer.set_attribute("access_logs.s3.prefix", ACCESS_LOG_PREFIX)
        # The ALB checks that it may write when the attribute is set.
        if bucket.policy is not None:
            load_balancer.node.add_dependency(bucket.policy)

    def _access_log_bucket(self) -> s3.Bucket:
        # ALB access logs accept SSE-S3 only. Kept on stack deletion (it holds evidence);
        # objects expire, so a leftover bucket empties itself.
        return s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(90))],
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _build_service(self, desired_count: int) -> ecs.FargateService:
        security_group = ec2.SecurityGroup(
            self,
            "TaskSecurityGroup",
            vpc=self.vpc,
            description="Relay tasks: the container port from the load balancer only",
            allow_all_outbound=True,  # OpenAI, ECR, Secrets Manager, CloudWatch, DynamoDB
        )
        return ecs.FargateService(
            self,
            "Service",
            cluster=self.cluster,
            task_definition=self.task_definition,
            desired_count=desired_count,
            assign_public_ip=True,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            security_groups=[security_group],
            min_healthy_percent=100,
            max_healthy_percent=200,
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            health_check_grace_period=Duration.seconds(60),
        )

    def _build_scaling(
        self, *, min_count: int, max_count: int, sessions_target: int
    ) -> ecs.ScalableTaskCount:
        scaling = self.service.auto_scale_task_count(min_capacity=min_count, max_capacity=max_count)
        scaling.scale_to_track_custom_metric(
            "ActiveSessionsPerTask",
            metric=self.active_sessions_metric("Average"),
            target_value=sessions_target,
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
