"""A play link (a presigned GET) is signed for a region; AWS S3 answers a link signed for another region
than the bucket's with an error (AuthorizationHeaderMalformed / a redirect), so the link does not play.
SeaweedFS, the test store, takes any region. The pipeline's own client, without a region in the
connection, asks the bucket's (GetBucketLocation, minio's client does it); the presigner took
us-east-1 instead, so with a connection without region_name (its region left to AWS_REGION, as boto3
does) every play link of a bucket outside us-east-1 was dead while the pipeline worked."""

from __future__ import annotations

import urllib.parse

import pytest

pytestmark = pytest.mark.integration


def test_a_play_link_is_signed_for_the_buckets_region(stack, s3, monkeypatch):
    from callscribe import search_page

    assert s3.settings.region is None  # the test connection names no region
    # GetBucketLocation of a bucket in Ireland, as AWS answers it.
    monkeypatch.setattr(s3.client, "_get_region", lambda bucket_name=None: "eu-west-1")
    search_page._presigner.cache_clear()
    try:
        url = search_page.audio_url(s3.bucket, "calls/2094/03/20/a.wav", 1.0)
    finally:
        search_page._presigner.cache_clear()
    credential = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["X-Amz-Credential"][0]
    assert credential.split("/")[2] == "eu-west-1", url
