using System.Globalization;
using System.Security;
using System.Text;

namespace Lamina.Server.Protocols;

/// <summary>What the AWS Query protocol's services (SQS's older protocol, SNS) share: the form body and XML answers.</summary>
internal static class QueryProtocol
{
    /// <summary>A form-encoded body as name → value (a repeated name keeps its last value).</summary>
    public static Dictionary<string, string> ParseForm(ReadOnlySpan<byte> body)
    {
        var form = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var pair in Encoding.UTF8.GetString(body).Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var eq = pair.IndexOf('=', StringComparison.Ordinal);
            var key = Uri.UnescapeDataString((eq < 0 ? pair : pair[..eq]).Replace('+', ' '));
            form[key] = eq < 0 ? "" : Uri.UnescapeDataString(pair[(eq + 1)..].Replace('+', ' '));
        }
        return form;
    }

    /// <summary>
    /// The numbered members of a list or map in a form: the prefixes <c>{prefix}1.</c>, <c>{prefix}2.</c>, … present,
    /// in order (e.g. <c>Attribute.1.</c> for SQS, <c>Attributes.entry.1.</c> for SNS).
    /// </summary>
    public static List<string> Indexed(Dictionary<string, string> form, string prefix)
    {
        var indices = new SortedSet<int>();
        foreach (var key in form.Keys)
        {
            if (key.StartsWith(prefix, StringComparison.Ordinal))
            {
                var rest = key[prefix.Length..];
                var dot = rest.IndexOf('.', StringComparison.Ordinal);
                if (dot > 0 && int.TryParse(rest[..dot], NumberStyles.None, CultureInfo.InvariantCulture, out var index))
                {
                    indices.Add(index);
                }
            }
        }
        return indices.Select(i => $"{prefix}{i.ToString(CultureInfo.InvariantCulture)}.").ToList();
    }

    public static void Element(StringBuilder xml, string name, string? value) =>
        xml.Append('<').Append(name).Append('>').Append(Escape(value ?? "")).Append("</").Append(name).Append('>');

    public static string Escape(string text) => SecurityElement.Escape(text).Replace("\r", "&#xD;", StringComparison.Ordinal);

    public static async Task WriteXmlAsync(HttpContext context, int status, StringBuilder xml)
    {
        var bytes = Encoding.UTF8.GetBytes(xml.ToString());
        context.Response.StatusCode = status;
        context.Response.ContentType = "text/xml";
        context.Response.ContentLength = bytes.Length;
        await context.Response.Body.WriteAsync(bytes);
    }
}
