using System.Globalization;
using System.Xml.Linq;

namespace Lamina.Server.S3;

/// <summary>
/// One CORSRule of a bucket's CORS configuration, and how S3 applies it: the first rule whose origin, method and (for
/// a preflight) every requested header match decides the response's <c>Access-Control-*</c> headers. Origins and
/// headers may hold one <c>*</c> wildcard.
/// </summary>
internal sealed record CorsRule(string? Id, IReadOnlyList<string> AllowedOrigins, IReadOnlyList<string> AllowedMethods,
    IReadOnlyList<string> AllowedHeaders, IReadOnlyList<string> ExposeHeaders, int? MaxAgeSeconds)
{
    private static readonly string[] Methods = ["GET", "PUT", "HEAD", "POST", "DELETE"];

    public static List<CorsRule> Parse(string xml) => Parse(XElement.Parse(xml), validate: false);

    public static List<CorsRule> Parse(XElement root, bool validate)
    {
        var rules = new List<CorsRule>();
        foreach (var rule in root.Children("CORSRule"))
        {
            var origins = rule.Children("AllowedOrigin").Select(e => e.Value).ToList();
            var methods = rule.Children("AllowedMethod").Select(e => e.Value).ToList();
            if (validate)
            {
                if (origins.Count == 0 || methods.Count == 0)
                {
                    throw S3Exception.MalformedXml();
                }
                foreach (var method in methods.Where(m => !Methods.Contains(m)))
                {
                    throw S3Exception.InvalidRequest($"Found unsupported HTTP method in CORS config. Unsupported method is {method}");
                }
            }
            int? maxAge = int.TryParse(rule.ChildValue("MaxAgeSeconds"), NumberStyles.None, CultureInfo.InvariantCulture, out var seconds) ? seconds : null;
            rules.Add(new CorsRule(rule.ChildValue("ID"), origins, methods, rule.Children("AllowedHeader").Select(e => e.Value).ToList(),
                rule.Children("ExposeHeader").Select(e => e.Value).ToList(), maxAge));
        }
        if (validate && rules.Count is 0 or > 100)
        {
            throw S3Exception.MalformedXml();
        }
        return rules;
    }

    public static XElement Render(IReadOnlyList<CorsRule> rules) => S3Xml.Element("CORSConfiguration", rules.Select(r => S3Xml.Element("CORSRule",
        S3Xml.Optional("ID", r.Id),
        r.AllowedHeaders.Select(h => S3Xml.Element("AllowedHeader", h)),
        r.AllowedMethods.Select(m => S3Xml.Element("AllowedMethod", m)),
        r.AllowedOrigins.Select(o => S3Xml.Element("AllowedOrigin", o)),
        r.ExposeHeaders.Select(h => S3Xml.Element("ExposeHeader", h)),
        r.MaxAgeSeconds is { } age ? S3Xml.Element("MaxAgeSeconds", age.ToString(CultureInfo.InvariantCulture)) : null)));

    /// <summary>The first rule that allows <paramref name="origin"/> to use <paramref name="method"/> with <paramref name="headers"/>.</summary>
    public static CorsRule? Find(IReadOnlyList<CorsRule> rules, string origin, string method, IEnumerable<string> headers)
    {
        foreach (var rule in rules)
        {
            if (rule.AllowedMethods.Contains(method, StringComparer.Ordinal)
                && rule.AllowedOrigins.Any(o => Wildcard(o, origin, StringComparison.Ordinal))
                && headers.All(h => rule.AllowedHeaders.Any(a => Wildcard(a, h, StringComparison.OrdinalIgnoreCase))))
            {
                return rule;
            }
        }
        return null;
    }

    /// <summary>The headers S3 adds for a matched rule (to a preflight, or to the actual request).</summary>
    public void Apply(HttpResponse response, string origin, bool preflight, string? requestedHeaders)
    {
        response.Headers.AccessControlAllowOrigin = AllowedOrigins.Contains("*") ? "*" : origin;
        response.Headers.Vary = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method";
        response.Headers.AccessControlAllowMethods = string.Join(", ", AllowedMethods);
        if (!AllowedOrigins.Contains("*"))
        {
            response.Headers.AccessControlAllowCredentials = "true";
        }
        if (preflight)
        {
            if (!string.IsNullOrEmpty(requestedHeaders))
            {
                response.Headers.AccessControlAllowHeaders = requestedHeaders;
            }
            if (MaxAgeSeconds is { } age)
            {
                response.Headers.AccessControlMaxAge = age.ToString(CultureInfo.InvariantCulture);
            }
        }
        else if (ExposeHeaders.Count > 0)
        {
            response.Headers.AccessControlExposeHeaders = string.Join(", ", ExposeHeaders);
        }
    }

    private static bool Wildcard(string pattern, string value, StringComparison comparison)
    {
        var star = pattern.IndexOf('*', StringComparison.Ordinal);
        if (star < 0)
        {
            return string.Equals(pattern, value, comparison);
        }
        var head = pattern[..star];
        var tail = pattern[(star + 1)..];
        return value.Length >= head.Length + tail.Length && value.StartsWith(head, comparison) && value.EndsWith(tail, comparison);
    }
}
