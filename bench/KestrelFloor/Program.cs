// A bare Kestrel echo (POST body back, application/json): the floor Lamina's warm invoke is compared with.
//   dotnet KestrelFloor.dll --urls http://127.0.0.1:PORT
using System.IO.Pipelines;

var builder = WebApplication.CreateSlimBuilder(args);
builder.Logging.ClearProviders();
builder.WebHost.ConfigureKestrel(kestrel => kestrel.AddServerHeader = false);
var app = builder.Build();
app.Run(static async context =>
{
    var reader = context.Request.BodyReader;
    ReadResult read;
    while (!(read = await reader.ReadAsync()).IsCompleted)
    {
        reader.AdvanceTo(read.Buffer.Start, read.Buffer.End);
    }
    var body = read.Buffer;
    context.Response.ContentType = "application/json";
    context.Response.ContentLength = body.Length;
    foreach (var segment in body)
    {
        await context.Response.BodyWriter.WriteAsync(segment);
    }
    reader.AdvanceTo(body.End);
});
await app.RunAsync();
