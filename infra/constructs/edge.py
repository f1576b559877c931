"""Edge: CloudFront in front of the relay's load balancer: ``wss://`` and ``https://``
without owning a domain (or on the user's own domain, from context).

One behaviour serves everything (the agent page, its assets and the WebSocket), so the
page and the socket share one hostname and the ALB's stickiness cookie is first-party:

- caching disabled (``CachingDisabled``): every request reaches the relay;
- all viewer headers, cookies and query strings forwarded (``AllViewer``): the WebSocket
  upgrade, ``Sec-WebSocket-Protocol`` (the browser's token), ``?token=``/``?model=`` and
  the ``AWSALB`` cookie must all pass;
- all methods, viewer protocol HTTPS only (plain HTTP gets 403), modern TLS where
  CloudFront allows choosing it (only with a custom certificate: the default
  ``*.cloudfront.net`` certificate is fixed by AWS);
- origin: without a custom domain, HTTP to the ALB's own DNS name (no certificate can
  name ``*.elb.amazonaws.com``); with one, HTTPS (TLS 1.2+) to ``origin.<domain>``, an
  alias of the ALB with its own certificate, so tokens and audio are encrypted end to
  end. Either way with the origin header the ALB's listener requires (see
  ``RelayService.origin_header_value``).

CloudFront's WebSocket idle timeout (10 min, fixed) is far above the relay's 20 s pings.
With a custom domain, the certificate is the one given by ARN (us-east-1), or a new
DNS-validated one, which CloudFront accepts only from us-east-1: a CloudFormation rule
stops a deploy to any other region before anything is created.
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
        load_balancer: elbv2.ILoadBalancerV2,
        origin_tls_domain: str | None,
        origin_header_name: str,
        origin_header_value: str,
        price_class: str,
        custom_domain: CustomDomain | None,
    ) -> None:
        """Put CloudFront in front of ``load_balancer`` (optionally on ``custom_domain``)."""
        super().__init__(scope, construct_id)
        zone = self._zone(custom_domain) if custom_domain else None
        certificate = self._certificate(custom_domain, zone) if custom_domain and zone else None
        self.distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment="Recall voice agent: agent page and relay WebSocket",
            default_behavior=cloudfront.BehaviorOptions(
                origin=self._origin(
                    load_balancer,
                    origin_tls_domain,
                    custom_headers={origin_header_name: origin_header_value},
                ),
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
        # The origin may be named by DNS (origin_tls_domain): still create after the ALB.
        self.distribution.node.add_dependency(load_balancer)
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
        load_balancer: elbv2.ILoadBalancerV2,
        tls_domain: str | None,
        *,
        custom_headers: dict[str, str],
    ) -> cloudfront.IOrigin:
        """HTTPS to the ALB under the user's name when there is one, else HTTP to its DNS name."""
        ssl = [cloudfront.OriginSslPolicy.TLS_V1_2]
        read_timeout = Duration.seconds(30)
        keepalive = Duration.seconds(5)
        if tls_domain is not None:
            return origins.HttpOrigin(
                tls_domain,
                protocol_policy=cloudfront.OriginProtocolPolicy.HTTPS_ONLY,
                origin_ssl_protocols=ssl,
                custom_headers=custom_headers,
                read_timeout=read_timeout,
                keepalive_timeout=keepalive,
            )
        return origins.LoadBalancerV2Origin(
            load_balancer,
            protocol_policy=cloudfront.OriginProtocolPolicy.HTTP_ONLY,
            origin_ssl_protocols=ssl,
            custom_headers=custom_headers,
            read_timeout=read_timeout,
            keepalive_timeout=keepalive,
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
