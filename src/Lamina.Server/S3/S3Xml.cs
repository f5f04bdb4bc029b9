using System.Globalization;
using System.Text;
using System.Xml;
using System.Xml.Linq;

namespace Lamina.Server.S3;

/// <summary>
/// An S3 error: the HTTP status, S3's code (<c>NoSuchKey</c>, <c>BucketNotEmpty</c>, …), the message, and the extra
/// elements S3 adds (<c>BucketName</c>, <c>Key</c>, …). Thrown from the handlers and from the body decoders (a bad
/// chunk signature surfaces in the middle of a read) and answered at one place, <see cref="S3Api"/>.
/// </summary>
internal sealed class S3Exception(int status, string code, string message, params (string Name, string Value)[] details) : Exception(message)
{
    public int Status { get; } = status;
    public string Code { get; } = code;
    public (string Name, string Value)[] Details { get; } = details;

    public static S3Exception NoSuchBucket(string bucket) => new(404, "NoSuchBucket", "The specified bucket does not exist", ("BucketName", bucket));
    public static S3Exception NoSuchKey(string key) => new(404, "NoSuchKey", "The specified key does not exist.", ("Key", key));
    public static S3Exception NoSuchUpload(string uploadId) =>
        new(404, "NoSuchUpload", "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.", ("UploadId", uploadId));
    public static S3Exception InvalidArgument(string message, string? name = null, string? value = null) =>
        name is null ? new(400, "InvalidArgument", message) : new(400, "InvalidArgument", message, ("ArgumentName", name), ("ArgumentValue", value ?? ""));
    public static S3Exception InvalidRequest(string message) => new(400, "InvalidRequest", message);
    public static S3Exception MalformedXml() =>
        new(400, "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema");
    public static S3Exception AccessDenied(string message = "Access Denied") => new(403, "AccessDenied", message);
}

/// <summary>S3's REST-XML: responses in the 2006-03-01 namespace, request documents parsed with no DTDs and a size cap.</summary>
internal static class S3Xml
{
    public const string Namespace = "http://s3.amazonaws.com/doc/2006-03-01/";

    /// <summary>The largest request document read (DeleteObjects with 1,000 keys of 1,024 bytes is about 1.1 MB).</summary>
    public const int MaxDocument = 4 * 1024 * 1024;

    private static readonly XNamespace Ns = Namespace;

    public static XElement Element(string name, params object?[] content) => new(Ns + name, content);

    /// <summary>An element only when the value is there.</summary>
    public static XElement? Optional(string name, string? value) => value is null ? null : new XElement(Ns + name, value);

    public static string Time(DateTimeOffset time) => time.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);

    public static string Time(long unixMs) => Time(DateTimeOffset.FromUnixTimeMilliseconds(unixMs));

    /// <summary>The HTTP date (<c>Last-Modified</c>) of a time, to the second as HTTP has it.</summary>
    public static string HttpDate(long unixMs) => DateTimeOffset.FromUnixTimeMilliseconds(unixMs).UtcDateTime.ToString("r", CultureInfo.InvariantCulture);

    public static async Task WriteAsync(HttpContext context, XElement root, int status = 200)
    {
        var response = context.Response;
        response.StatusCode = status;
        response.ContentType = "application/xml";
        var settings = new XmlWriterSettings { Encoding = new UTF8Encoding(false), Async = true, Indent = false };
        using var buffer = new MemoryStream();
        try
        {
            await using var writer = XmlWriter.Create(buffer, settings);
            await new XDocument(new XDeclaration("1.0", "UTF-8", null), root).SaveAsync(writer, context.RequestAborted);
        }
        catch (ArgumentException)
        {
            // A character XML 1.0 cannot carry (a NUL in a tag or a prefix the client sent): each becomes U+FFFD, as
            // QueryProtocol.Escape does, rather than a 500 for the whole answer.
            foreach (var text in root.DescendantNodes().OfType<XText>())
            {
                text.Value = Protocols.QueryProtocol.XmlCharacters(text.Value);
            }
            buffer.SetLength(0);
            await using var writer = XmlWriter.Create(buffer, settings);
            await new XDocument(new XDeclaration("1.0", "UTF-8", null), root).SaveAsync(writer, context.RequestAborted);
        }
        response.ContentLength = buffer.Length;
        await response.Body.WriteAsync(buffer.GetBuffer().AsMemory(0, (int)buffer.Length), context.RequestAborted);
    }

    /// <summary>S3's error document (no body for HEAD, as S3).</summary>
    public static async Task WriteErrorAsync(HttpContext context, S3Exception error, string requestId, string? resource)
    {
        var response = context.Response;
        response.StatusCode = error.Status;
        if (HttpMethods.IsHead(context.Request.Method))
        {
            response.Headers["x-amz-error-code"] = error.Code;
            return;
        }
        var root = new XElement("Error", new XElement("Code", error.Code), new XElement("Message", error.Message));
        foreach (var (name, value) in error.Details)
        {
            root.Add(new XElement(name, value));
        }
        if (resource is not null)
        {
            root.Add(new XElement("Resource", resource));
        }
        root.Add(new XElement("RequestId", requestId), new XElement("HostId", HostId(requestId)));
        response.ContentType = "application/xml";
        var text = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n" + root.ToString(SaveOptions.DisableFormatting);
        await response.WriteAsync(text, context.RequestAborted);
    }

    /// <summary>S3's <c>x-amz-id-2</c>: an opaque id of the host that served the request.</summary>
    public static string HostId(string requestId) => Convert.ToBase64String(Encoding.ASCII.GetBytes("lamina/" + requestId));

    /// <summary>Reads a request document: MalformedXML when it is not XML, too large, or carries a DTD.</summary>
    public static async Task<XElement> ReadAsync(HttpRequest request, Stream body)
    {
        using var buffer = new MemoryStream();
        var chunk = new byte[16 * 1024];
        int read;
        while ((read = await body.ReadAsync(chunk, request.HttpContext.RequestAborted)) > 0)
        {
            if (buffer.Length + read > MaxDocument)
            {
                throw new S3Exception(400, "MalformedXML", $"The XML you provided is larger than the {MaxDocument / (1024 * 1024)} MB S3 reads.");
            }
            buffer.Write(chunk, 0, read);
        }
        if (buffer.Length == 0)
        {
            throw MalformedXml();
        }
        buffer.Position = 0;
        try
        {
            using var reader = XmlReader.Create(buffer, new XmlReaderSettings { DtdProcessing = DtdProcessing.Prohibit, XmlResolver = null, MaxCharactersInDocument = MaxDocument });
            return XElement.Load(reader);
        }
        catch (XmlException)
        {
            throw MalformedXml();
        }
    }

    private static S3Exception MalformedXml() => S3Exception.MalformedXml();

    /// <summary>Child elements by local name, whatever namespace the client used (or none).</summary>
    public static IEnumerable<XElement> Children(this XElement element, string name) => element.Elements().Where(e => e.Name.LocalName == name);

    public static XElement? Child(this XElement element, string name) => element.Elements().FirstOrDefault(e => e.Name.LocalName == name);

    public static string? ChildValue(this XElement element, string name) => element.Child(name)?.Value;
}
