"""How CloudFront reaches the relay's internal load balancer: the origin's own TLS name
(optional) and the load balancer's access logs.

Functions of the ``RelayService`` construct (``scope``): the resources they add keep the
construct paths, and so the logical ids, they had as its methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from aws_cdk import Aws, CfnCondition, Duration, Fn, RemovalPolicy
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_route53_targets as route53_targets
from aws_cdk import aws_s3 as s3
from constructs import Construct

#: Account through which Elastic Load Balancing writes access logs in the Regions that
#: opened before August 2022 (AWS docs, "Enable access logs for your Application Load
#: Balancer"). Newer Regions use the service principal, which the policy always names.
#: Selected by per-Region conditions, not a mapping: an unlisted Region must not fail
#: the deploy at a ``Fn::FindInMap``.
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
ELB_LOG_SERVICE: Final = "logdelivery.elasticloadbalancing.amazonaws.com"
ACCESS_LOG_PREFIX: Final = "alb"


@dataclass(frozen=True, slots=True)
class OriginTls:
    """A DNS name of the user's own for the load balancer, so CloudFront reaches it over TLS.

    Only possible with a custom domain: no certificate can name ``*.elb.amazonaws.com``.
    The certificate is requested in the stack's region, DNS-validated in the zone, and
    names both ``domain_name`` (the origin's SNI) and ``viewer_domain`` (the Host header
    CloudFront forwards, which it checks the certificate against).
    """

    domain_name: str
    viewer_domain: str
    hosted_zone_id: str
    hosted_zone_name: str


def origin_certificate(
    scope: Construct, load_balancer: elbv2.ApplicationLoadBalancer, tls: OriginTls
) -> elbv2.IListenerCertificate:
    """The listener's certificate for ``tls.domain_name`` (DNS-validated in its zone), and
    the record that points that name at the internal load balancer."""
    zone = route53.HostedZone.from_hosted_zone_attributes(
        scope,
        "OriginZone",
        hosted_zone_id=tls.hosted_zone_id,
        zone_name=tls.hosted_zone_name,
    )
    # origin.<domain> names the internal ALB (private addresses): what the origin's
    # SNI asks for; the domain itself is the Host header CloudFront forwards.
    route53.ARecord(
        scope,
        "OriginAlias",
        zone=zone,
        record_name=tls.domain_name,
        target=route53.RecordTarget.from_alias(route53_targets.LoadBalancerTarget(load_balancer)),
    )
    certificate = acm.Certificate(
        scope,
        "OriginCertificate",
        domain_name=tls.domain_name,
        subject_alternative_names=[tls.viewer_domain],
        validation=acm.CertificateValidation.from_dns(zone),
    )
    return elbv2.ListenerCertificate.from_certificate_manager(certificate)


def log_access(scope: Construct, load_balancer: elbv2.ApplicationLoadBalancer) -> None:
    """The load balancer's access logs, to a bucket of their own."""
    # `log_access_logs()` needs a concrete region at synth; this stack is
    # environment-agnostic, so the attributes and the bucket policy are written here.
    bucket = _access_log_bucket(scope)
    objects = bucket.arn_for_objects(f"{ACCESS_LOG_PREFIX}/AWSLogs/{Aws.ACCOUNT_ID}/*")
    principals: list[iam.IPrincipal] = [iam.ServicePrincipal(ELB_LOG_SERVICE)]
    legacy = _legacy_log_account(scope)
    principals.append(iam.ArnPrincipal(legacy))
    bucket.add_to_resource_policy(
        iam.PolicyStatement(actions=["s3:PutObject"], principals=principals, resources=[objects])
    )
    load_balancer.set_attribute("access_logs.s3.enabled", "true")
    load_balancer.set_attribute("access_logs.s3.bucket", bucket.bucket_name)
    load_balancer.set_attribute("access_logs.s3.prefix", ACCESS_LOG_PREFIX)
    # The ALB checks that it may write when the attribute is set.
    if bucket.policy is not None:
        load_balancer.node.add_dependency(bucket.policy)


def _legacy_log_account(scope: Construct) -> str:
    """The Region's ELB account root ARN, or AWS::NoValue in a Region it has none.

    A chain of ``Fn::If`` on one condition per listed Region: any Region deploys, and
    an unlisted one simply relies on the service principal.
    """
    value: str = Aws.NO_VALUE
    for region, account in sorted(ELB_LOG_DELIVERY_ACCOUNTS.items(), reverse=True):
        condition = CfnCondition(
            scope,
            f"ElbLogs{region.title().replace('-', '')}",
            expression=Fn.condition_equals(Aws.REGION, region),
        )
        value = Fn.condition_if(
            condition.logical_id, f"arn:{Aws.PARTITION}:iam::{account}:root", value
        ).to_string()
    return value


def _access_log_bucket(scope: Construct) -> s3.Bucket:
    # ALB access logs accept SSE-S3 only. Kept on stack deletion (it holds evidence);
    # objects expire, so a leftover bucket empties itself.
    return s3.Bucket(
        scope,
        "AccessLogs",
        encryption=s3.BucketEncryption.S3_MANAGED,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(90))],
        removal_policy=RemovalPolicy.RETAIN,
    )
