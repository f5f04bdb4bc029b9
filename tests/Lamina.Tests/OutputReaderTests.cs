using System.IO.Pipes;
using System.Text;
using Lamina.Server.Sandbox;

namespace Lamina.Tests;

public sealed class OutputReaderTests
{
    [Fact]
    public void Drain_AfterWrites_DeliversEveryCompleteLineInOrder()
    {
        using var reader = new OutputReader();
        using var server = new AnonymousPipeServerStream(PipeDirection.In);
        using var client = new AnonymousPipeClientStream(PipeDirection.Out, server.ClientSafePipeHandle);
        var lines = new List<string>();
        var stream = reader.Add(server.SafePipeHandle, line => { lock (lines) { lines.Add(line); } });

        for (var i = 0; i < 100; i++)
        {
            client.Write(Encoding.UTF8.GetBytes($"line {i}\n"));
        }
        client.Write("partial"u8);
        client.Flush();
        stream.Drain(flushPartialLine: false);

        lock (lines)
        {
            Assert.Equal(100, lines.Count);
            Assert.Equal("line 0", lines[0]);
            Assert.Equal("line 99", lines[99]);
        }

        stream.Drain(flushPartialLine: true);
        lock (lines)
        {
            Assert.Equal("partial", lines[^1]);
        }
    }

    [Fact]
    public async Task Completion_WhenWriterCloses_CompletesAfterLastLine()
    {
        using var reader = new OutputReader();
        var server = new AnonymousPipeServerStream(PipeDirection.In);
        var client = new AnonymousPipeClientStream(PipeDirection.Out, server.ClientSafePipeHandle);
        var lines = new List<string>();
        var stream = reader.Add(server.SafePipeHandle, line => { lock (lines) { lines.Add(line); } });

        client.Write("last words"u8);
        client.Dispose();
        server.DisposeLocalCopyOfClientHandle();
        await stream.Completion.WaitAsync(TimeSpan.FromSeconds(10));

        lock (lines)
        {
            Assert.Equal(["last words"], lines);
        }
    }

    [Fact]
    public async Task Drain_LineLongerThanLimit_IsCutIntoRecords()
    {
        using var reader = new OutputReader();
        using var server = new AnonymousPipeServerStream(PipeDirection.In);
        using var client = new AnonymousPipeClientStream(PipeDirection.Out, server.ClientSafePipeHandle);
        var lines = new List<string>();
        var stream = reader.Add(server.SafePipeHandle, line => { lock (lines) { lines.Add(line); } });

        var writer = Task.Run(() =>
        {
            client.Write(Enumerable.Repeat((byte)'x', OutputStream.MaxLineBytes + 10).ToArray());
            client.Write("\n"u8);
            client.Flush();
        });
        // The reader thread empties the pipe while the writer blocks on it; then everything is there to drain.
        await writer.WaitAsync(TimeSpan.FromSeconds(10));
        stream.Drain(flushPartialLine: false);

        lock (lines)
        {
            Assert.Equal(2, lines.Count);
            Assert.Equal(OutputStream.MaxLineBytes, lines[0].Length);
            Assert.Equal(10, lines[1].Length);
        }
    }
}
