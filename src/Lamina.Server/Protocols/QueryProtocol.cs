using System.Buffers;
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

    /// <summary>Text as an XML element's content: markup escaped, CR kept as a reference (<see cref="XmlCharacters"/>).</summary>
    public static string Escape(string text) => XmlCharacters(SecurityElement.Escape(text).Replace("\r", "&#xD;", StringComparison.Ordinal));

    /// <summary>
    /// Text with each character XML 1.0 does not allow, even as a reference (NUL, U+0001–U+0008, U+000B, U+000C,
    /// U+000E–U+001F, U+FFFE, U+FFFF), as U+FFFD. One such character in a stack's description would otherwise make every
    /// DescribeStacks and ListStacks unreadable to the SDKs.
    /// </summary>
    public static string XmlCharacters(string text) =>
        text.AsSpan().IndexOfAny(NotInXml) < 0 ? text : string.Create(text.Length, text, static (span, source) =>
        {
            for (var i = 0; i < source.Length; i++)
            {
                span[i] = NotInXml.Contains(source[i]) ? '\uFFFD' : source[i];
            }
        });

    private static readonly SearchValues<char> NotInXml = SearchValues.Create(
        "\u0000\u0001\u0002\u0003\u0004\u0005\u0006\u0007\u0008\u000B\u000C\u000E\u000F\u0010\u0011\u0012\u0013\u0014\u0015\u0016\u0017\u0018\u0019\u001A\u001B\u001C\u001D\u001E\u001F\uFFFE\uFFFF");

    public static async Task WriteXmlAsync(HttpContext context, int status, StringBuilder xml)
    {
        var bytes = Encoding.UTF8.GetBytes(xml.ToString());
        context.Response.StatusCode = status;
        context.Response.ContentType = "text/xml";
        context.Response.ContentLength = bytes.Length;
        await context.Response.Body.WriteAsync(bytes);
    }
}
