namespace Lamina.Server.Lambda;

/// <summary>
/// A function URL (CreateFunctionUrlConfig) of <c>$LATEST</c> or an alias: a dedicated HTTP endpoint, addressed by
/// <see cref="UrlId"/> (<c>http://&lt;url-id&gt;.lambda-url.&lt;region&gt;.localhost:&lt;port&gt;/</c>, or
/// <c>/lambda-url/&lt;url-id&gt;/</c> on the API's listener), that turns each request into a payload 2.0 event.
/// </summary>
/// <param name="Qualifier"><c>$LATEST</c> (what an unqualified request names) or an alias name.</param>
/// <param name="UrlId">32 lower-case letters and digits, unique on the server, kept for the URL's whole life.</param>
/// <param name="AuthType"><c>NONE</c> (a resource policy must allow anyone) or <c>AWS_IAM</c> (SigV4-signed requests).</param>
/// <param name="Cors">Cross-origin settings; null when the function answers preflight requests itself.</param>
/// <param name="InvokeMode"><c>BUFFERED</c>, or <c>RESPONSE_STREAM</c> (streamed to the client as the runtime writes).</param>
/// <param name="CreationTime">When CreateFunctionUrlConfig made it.</param>
/// <param name="LastModifiedTime">When it last changed.</param>
internal sealed record FunctionUrlConfig(string Qualifier, string UrlId, string AuthType, CorsDto? Cors, string InvokeMode,
    DateTimeOffset CreationTime, DateTimeOffset LastModifiedTime);
