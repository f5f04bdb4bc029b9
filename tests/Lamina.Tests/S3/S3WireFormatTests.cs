using Lamina.Server.S3;
using Microsoft.AspNetCore.Http;

namespace Lamina.Tests.S3;

public sealed class S3WireFormatTests
{
    [Theory]
    [InlineData("CRC32", "y/Q5Jg==")]      // 0xCBF43926, the check value of "123456789"
    [InlineData("CRC32C", "4waSgw==")]     // 0xE3069283
    [InlineData("SHA1", "98O8HYCOBHMq32eZZczDTKeuNEE=")]
    [InlineData("SHA256", "FeKw08M4keuw8e9gnsQZQgwg4yDOlMZfvIwzEkSOsiU=")]
    public void Of_CheckValue_MatchesTheAlgorithmsReference(string algorithm, string expected)
    {
        Assert.Equal(expected, S3Checksums.Of(algorithm, "123456789"u8));
    }

    [Fact]
    public void Hasher_InPieces_EqualsWhole()
    {
        var data = Enumerable.Range(0, 100_000).Select(i => (byte)(i * 31)).ToArray();
        foreach (var algorithm in new[] { "CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256" })
        {
            var hasher = S3Checksums.Create(algorithm);
            for (var offset = 0; offset < data.Length; offset += 7919)
            {
                hasher.Append(data.AsSpan(offset, Math.Min(7919, data.Length - offset)));
            }
            Assert.Equal(S3Checksums.Of(algorithm, data), hasher.Finish());
        }
    }

    [Theory]
    [InlineData("photos/red flower.jpg", "photos/red+flower.jpg")]
    [InlineData("a+b=c&d", "a%2Bb%3Dc%26d")]
    [InlineData("日本", "%E6%97%A5%E6%9C%AC")]
    [InlineData("keep-_.*/", "keep-_.*/")]
    public void EventKey_EncodedAsS3sRecords(string key, string expected)
    {
        Assert.Equal(expected, S3Notifications.EventKey(key));
    }

    [Fact]
    public void StringToSign_AwsSignatureV2Example()
    {
        // AWS's "Signing and authenticating REST requests" example: GET of a photo, path-style.
        var context = new DefaultHttpContext();
        context.Request.Method = "GET";
        context.Request.Headers.Date = "Tue, 27 Mar 2007 19:36:42 +0000";

        var stringToSign = S3SignatureV2.StringToSign(context.Request, "/awsexamplebucket1/photos/puppy.jpg", presigned: false);

        Assert.Equal("GET\n\n\nTue, 27 Mar 2007 19:36:42 +0000\n/awsexamplebucket1/photos/puppy.jpg", stringToSign);
    }

    [Fact]
    public void StringToSign_PresignedWithSubresourcesAndAmzQuery()
    {
        var context = new DefaultHttpContext();
        context.Request.Method = "PUT";
        context.Request.QueryString = new QueryString("?uploadId=abc&partNumber=2&AWSAccessKeyId=k&Expires=1700000000&Signature=s&x-amz-meta-a=1&unrelated=x");

        var stringToSign = S3SignatureV2.StringToSign(context.Request, "/b/k", presigned: true);

        Assert.Equal("PUT\n\n\n1700000000\nx-amz-meta-a:1\n/b/k?partNumber=2&uploadId=abc", stringToSign);
    }

    [Fact]
    public void CorsRule_FindsTheFirstRuleAllowingOriginMethodAndHeaders()
    {
        var rules = CorsRule.Parse("""
            <CORSConfiguration>
              <CORSRule><AllowedOrigin>https://*.example.com</AllowedOrigin><AllowedMethod>GET</AllowedMethod><AllowedHeader>x-amz-*</AllowedHeader></CORSRule>
              <CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>HEAD</AllowedMethod></CORSRule>
            </CORSConfiguration>
            """);

        Assert.NotNull(CorsRule.Find(rules, "https://app.example.com", "GET", ["x-amz-date"]));
        Assert.Null(CorsRule.Find(rules, "https://app.example.com", "GET", ["authorization"]));
        Assert.Null(CorsRule.Find(rules, "https://example.org", "GET", []));
        Assert.NotNull(CorsRule.Find(rules, "https://example.org", "HEAD", []));
        Assert.Null(CorsRule.Find(rules, "https://app.example.com", "DELETE", []));
    }
}
