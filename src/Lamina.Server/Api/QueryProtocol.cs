using System.Security;
using System.Text;

namespace Lamina.Server.Api;

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
