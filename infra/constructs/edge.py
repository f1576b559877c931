"""Edge: CloudFront in front of the relay's private load balancer: ``wss://`` and
``https://`` without owning a domain (or on the user's own domain, from context).

One behaviour serves everything (the agent page, its assets and the WebSocket), so the
page and the socket share one hostname and the ALB's stickiness cookie is first-party:

- caching disabled (``CachingDisabled``): every request reaches the relay;
- all viewer headers, cookies and query strings forwarded (``AllViewer``): the WebSocket
  upgrade, ``Sec-WebSocket-Protocol`` (the browser's token), ``?model=`` and the
  ``AWSALB`` cookie must all pass;
- all methods, viewer protocol HTTPS only (plain HTTP gets 403), modern TLS where
  CloudFront allows choosing it (only with a custom certificate: the default
  ``*.cloudfront.net`` certificate is fixed by AWS);
- origin: a **CloudFront VPC origin** for the internal ALB (``origins.VpcOrigin``): the
  origin leg runs over CloudFront's private connection into the VPC, never the internet,
  and the ALB has no public address. Without a custom domain the leg is HTTP inside that
  connection (no certificate can name ``*.elb.amazonaws.com``); with one it is HTTPS
  (TLS 1.2+) to ``origin.<domain>``, so tokens and audio are encrypted end to end.

VPC origins carry WebSockets since 2026-05-01 and exist in the Regions of
:data:`VPC_ORIGIN_REGIONS` (docs/aws.md); a CloudFormation rule stops a deploy to any
other Region before anything is created. CloudFront's WebSocket idle timeout (10 min,
fixed) is far above the relay's 20 s pings. With a custom domain, the certificate is the
one given by ARN (us-east-1), or a new DNS-validated one, which CloudFront accepts only
from us-east-1: another CloudFormation rule says so before anything is created.
"""

from __future__ import annotations

from typing import Final

from aws_cdk import Aws, CfnRule, CfnRuleAssertion, Duration, Fn
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_route53_targets as targets
from constructs import Construct

from infra.settings import CustomDomain

REALTIME_PATH: Final = "/v1/realtime"
#: Regions where CloudFront offers VPC origins (AWS docs, "Supported AWS Regions for VPC
#: origins", copied in docs/aws.md). Some AZs are excluded there: see availability_zones.
VPC_ORIGIN_REGIONS: Final = (
    "af-south-1", "ap-east-1", "ap-east-2", "ap-northeast-1", "ap-northeast-2",
    "ap-northeast-3", "ap-south-1", "ap-south-2", "ap-southeast-1", "ap-southeast-2",
    "ap-southeast-3", "ap-southeast-4", "ap-southeast-5", "ap-southeast-7", "ca-central-1",
    "ca-west-1", "eu-central-1", "eu-central-2", "eu-north-1", "eu-south-1", "eu-south-2",
    "eu-west-1", "eu-west-2", "eu-west-3", "il-central-1", "me-central-1", "me-south-1",
    "mx-central-1", "sa-east-1", "us-east-1", "us-east-2", "us-west-1", "us-west-2",
)  # fmt: skip
#: Context value (CloudFront's own name) → CDK enum.
PRICE_CLASSES: Final = {
    "PriceClass_All": cloudfront.PriceClass.PRICE_CLASS_ALL,
    "PriceClass_200": cloudfront.PriceClass.PRICE_CLASS_200,
    "PriceClass_100": cloudfront.PriceClass.PRICE_CLASS_100,
}


class Edge(Construct):
    """The distribution. Exposes ``distribution``, ``domain_name``, ``relay_url``, ``page_url``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        load_balancer: elbv2.IApplicationLoadBalancer,
        origin_tls_domain: str | None,
        price_class: str,
        custom_domain: CustomDomain | None,
    ) -> None:
        """Put CloudFront in front of ``load_balancer`` (optionally on ``custom_domain``)."""
        super().__init__(scope, construct_id)
        self._require_vpc_origin_region()
        zone = self._zone(custom_domain) if custom_domain else None
        certificate = self._certificate(custom_domain, zone) if custom_domain and zone else None
        self.distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment="Recall voice agent: agent page and relay WebSocket",
            default_behavior=cloudfront.BehaviorOptions(
                origin=self._origin(load_balancer, origin_tls_domain),
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
                allowed_methods=cloudfront.AllowedMethods.ALLOW_ALL,
                cache_policy=cloudfront.CachePolicy.CACHING_DISABLED,
                origin_request_policy=cloudfront.OriginRequestPolicy.ALL_VIEWER,
                compress=False,
            ),
            price_class=PRICE_CLASSES[price_class],
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            enable_ipv6=True,
            domain_names=[custom_domain.domain_name] if custom_domain else None,
            certificate=certificate,
            # Only meaningful with our own certificate; the default one is fixed by AWS.
            minimum_protocol_version=(
                cloudfront.SecurityPolicyProtocol.TLS_V1_2_2021 if certificate else None
            ),
        )
        if custom_domain is not None and zone is not None:
            self._dns_records(custom_domain, zone)
            self.domain_name = custom_domain.domain_name
        else:
            self.domain_name = self.distribution.distribution_domain_name

    @property
    def relay_url(self) -> str:
        """The relay's WebSocket URL (OpenAI-compatible path)."""
        return f"wss://{self.domain_name}{REALTIME_PATH}"

    @property
    def page_url(self) -> str:
        """The agent page (the bot's camera) on the same host as the socket."""
        return f"https://{self.domain_name}/"

    # Private

    @staticmethod
    def _origin(
        load_balancer: elbv2.IApplicationLoadBalancer, tls_domain: str | None
    ) -> cloudfront.IOrigin:
        """The internal ALB as a VPC origin: HTTPS under the user's name, else HTTP."""
        https = tls_domain is not None
        return origins.VpcOrigin.with_application_load_balancer(
            load_balancer,
            domain_name=tls_domain,  # None: the ALB's own (private) DNS name
            protocol_policy=(
                cloudfront.OriginProtocolPolicy.HTTPS_ONLY
                if https
                else cloudfront.OriginProtocolPolicy.HTTP_ONLY
            ),
            http_port=80,
            https_port=443,
            origin_ssl_protocols=[cloudfront.OriginSslPolicy.TLS_V1_2],
            read_timeout=Duration.seconds(30),  # the 101 handshake; then 10 min idle
            keepalive_timeout=Duration.seconds(5),
        )

    def _require_vpc_origin_region(self) -> None:
        CfnRule(
            self,
            "VpcOriginRegion",
            assertions=[
                CfnRuleAssertion(
                    assert_=Fn.condition_contains(list(VPC_ORIGIN_REGIONS), Aws.REGION),
                    assert_description=(
                        "CloudFront VPC origins (the relay's private origin) are not offered "
                        "in this Region; deploy to one of: " + ", ".join(VPC_ORIGIN_REGIONS)
                    ),
                )
            ],
        )

    def _zone(self, domain: CustomDomain) -> route53.IHostedZone:
        return route53.HostedZone.from_hosted_zone_attributes(
            self, "Zone", hosted_zone_id=domain.hosted_zone_id, zone_name=domain.hosted_zone_name
        )

    def _certificate(self, domain: CustomDomain, zone: route53.IHostedZone) -> acm.ICertificate:
        if domain.certificate_arn is not None:
            return acm.Certificate.from_certificate_arn(self, "Certificate", domain.certificate_arn)
        CfnRule(
            self,
            "CertificateRegion",
            assertions=[
                CfnRuleAssertion(
                    assert_=Fn.condition_equals(Aws.REGION, "us-east-1"),
                    assert_description=(
                        "CloudFront takes certificates from us-east-1 only: deploy there, or "
                        "pass -c certificate_arn=<an ACM certificate in us-east-1>"
                    ),
                )
            ],
        )
        return acm.Certificate(
            self,
            "Certificate",
            domain_name=domain.domain_name,
            validation=acm.CertificateValidation.from_dns(zone),
        )

    def _dns_records(self, domain: CustomDomain, zone: route53.IHostedZone) -> None:
        target = route53.RecordTarget.from_alias(targets.CloudFrontTarget(self.distribution))
        route53.ARecord(self, "AliasV4", zone=zone, record_name=domain.domain_name, target=target)
        route53.AaaaRecord(
            self, "AliasV6", zone=zone, record_name=domain.domain_name, target=target
        )
